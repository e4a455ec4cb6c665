import PhotosUI
import SwiftUI

/// The two demos, chosen by each model's "task" in models.json: image classification (bundled
/// sample images, or one from the photo library) and text classification / embedding. Anything
/// else runs on random inputs.
struct ContentView: View {
    @State private var catalog: ModelCatalog?
    @State private var loadError: String?
    @State private var selected = 0
    @State private var computeUnits = "all"
    @State private var sample = ""
    @State private var image: UIImage?
    @State private var photo: PhotosPickerItem?
    @State private var textA = ""
    @State private var textB = ""
    @State private var output = ""
    @State private var busy = false
    @State private var stateOutputs: [TensorData]?  // a stateful model's last outputs, fed back at the next Run
    @State private var stateStep = 0

    private var samples: [String] {
        let urls = Bundle.main.urls(forResourcesWithExtension: nil, subdirectory: "Samples") ?? []
        return urls.map(\.lastPathComponent).filter { $0.hasSuffix(".jpg") || $0.hasSuffix(".png") }.sorted()
    }

    var body: some View {
        NavigationStack {
            Form {
                if let catalog {
                    let entry = catalog.models[selected]
                    Section("Model") {
                        Picker("Model", selection: $selected) {
                            ForEach(catalog.models.indices, id: \.self) { i in
                                Text("\(catalog.models[i].id) (\(catalog.models[i].runtime), \(catalog.models[i].precision ?? "-"))").tag(i)
                            }
                        }
                        if entry.runtime == "coreml" {
                            Picker("Compute units", selection: $computeUnits) {
                                ForEach(Runners.computeUnitNames, id: \.self) { Text($0).tag($0) }
                            }
                        }
                        Text("\(entry.task), verified \(entry.status ?? "-")").font(.footnote)
                    }
                    if entry.task == "image-classification" {
                        Section("Image") {
                            Picker("Sample", selection: $sample) {
                                ForEach(samples, id: \.self) { Text($0).tag($0) }
                            }
                            PhotosPicker("Choose a photo", selection: $photo, matching: .images)
                            if let image { Image(uiImage: image).resizable().scaledToFit().frame(maxHeight: 240) }
                        }
                    } else if entry.task.hasPrefix("text"), entry.text?.tokenizer != nil {
                        Section("Text") {
                            TextField("Text", text: $textA)
                            if entry.task == "text-embedding" { TextField("Compare with", text: $textB) }
                        }
                    }
                    Section {
                        Button("Run") { Task { await runDemo(entry, catalog) } }.disabled(busy)
                        Button("Benchmark (20 runs)") { Task { await benchmark(entry) } }.disabled(busy)
                    }
                    Section("Result") { Text(output).font(.system(.footnote, design: .monospaced)) }
                } else {
                    Text(loadError ?? "No models packaged.\n\nedgekit package --app ios MODEL.mlpackage\nthen rebuild the app.")
                }
            }
            .navigationTitle("edgekit demo")
        }
        .onAppear(perform: load)
        .onChange(of: selected) { _ in
            stateOutputs = nil
            stateStep = 0
        }
        .onChange(of: sample) { name in
            if let url = Bundle.main.url(forResource: name, withExtension: nil, subdirectory: "Samples") {
                image = UIImage(contentsOfFile: url.path)
            }
        }
        .onChange(of: photo) { item in
            Task {
                if let data = try? await item?.loadTransferable(type: Data.self) { image = UIImage(data: data) }
            }
        }
    }

    private func load() {
        do {
            catalog = try ModelCatalog.bundled()
            textA = catalog?.sampleTexts.first ?? ""
            textB = catalog?.sampleTexts.dropFirst().first ?? ""
            sample = samples.first ?? ""
        } catch {
            loadError = "models.json: \(error.localizedDescription)"
        }
    }

    private func inputs(_ entry: ModelEntry, text: String) throws -> ([TensorData], [Int64]?) {
        if let info = entry.image {
            guard let cg = image?.cgImage else { throw AppError("pick a sample image first") }
            var inputs = try randomInputs(entry)
            let rgba = try ImagePreprocessor.rgba(cg, width: info.width, height: info.height)
            inputs[info.input] = try ImagePreprocessor.toInput(rgba: rgba, image: info, input: entry.inputs[info.input])
            return (inputs, nil)
        }
        if let info = entry.text, let vocabName = info.vocabFile, let url = ModelCatalog.fileURL(vocabName) {
            let vocab = try String(contentsOf: url, encoding: .utf8).components(separatedBy: "\n")
            let encoding = WordPieceTokenizer(vocab: vocab, lowercase: info.lowercase, special: info.specialTokens)
                .encode(text, maxLength: info.maxLength)
            return (try textInputs(entry, encoding), encoding.mask)
        }
        return (try randomInputs(entry), nil)
    }

    private func describe(_ entry: ModelEntry, _ outputs: [TensorData]) -> String {
        outputs.map { out in
            let values = out.toReal()
            if out.info.role == "logits" {
                return "\(out.info.name): top \(entry.topK)\n" + Postprocess.topK(values, k: entry.topK, labels: entry.labels)
                    .map { $0.label.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: " %.3f", $0.probability) }.joined(separator: "\n")
            }
            let head = values.prefix(8).map { String(format: "%.4f", $0) }.joined(separator: ", ")
            return "\(out.info.name) \(out.info.shape.map(String.init).joined(separator: "x")): \(head)\(values.count > 8 ? ", ..." : "")"
        }.joined(separator: "\n\n")
    }

    @MainActor
    private func runDemo(_ entry: ModelEntry, _ catalog: ModelCatalog) async {
        busy = true
        defer { busy = false }
        do {
            guard let url = ModelCatalog.fileURL(entry.file) else { throw AppError("\(entry.file) is not in the app bundle") }
            let runner = try await Runners.open(entry, url: url, computeUnits: computeUnits, threads: 1)
            let (fresh, mask) = try inputs(entry, text: textA)
            let outputs = try await runner.run(inputs: try feedState(fresh, previous: stateOutputs, links: entry.state))
            if entry.task == "text-embedding", entry.text?.tokenizer != nil,
               let index = outputs.firstIndex(where: { $0.info.role == "embedding" }) {
                let (second, maskB) = try inputs(entry, text: textB)
                let a = Postprocess.embedding(outputs[index], mask: mask)
                let b = Postprocess.embedding(try await runner.run(inputs: second)[index], mask: maskB)
                output = String(format: "cosine similarity: %.4f (%d-d embeddings)", Postprocess.cosine(a, b), a.count)
            } else if !entry.state.isEmpty {
                stateOutputs = outputs
                stateStep += 1
                let links = entry.state.map { "output \($0.output) -> input \($0.input)" }.joined(separator: ", ")
                output = "step \(stateStep) (fed back: \(links); Run again for the next step)\n\n" + describe(entry, outputs)
            } else {
                output = describe(entry, outputs)
            }
        } catch {
            output = "error: \(error.localizedDescription)"
        }
    }

    @MainActor
    private func benchmark(_ entry: ModelEntry) async {
        busy = true
        defer { busy = false }
        do {
            guard let url = ModelCatalog.fileURL(entry.file) else { throw AppError("\(entry.file) is not in the app bundle") }
            let m = try await Benchmark.measure(open: { try await Runners.open(entry, url: url, computeUnits: computeUnits, threads: 1) },
                                          inputs: try randomInputs(entry), warmup: 5, runs: 20)
            output = String(format: "load %.1f ms, first %.2f ms\nmean %.3f ms, p50 %.3f, p90 %.3f (20 runs, %@)",
                            m.loadMs, m.firstMs, m.stats.mean, m.stats.p50, m.stats.p90, m.runner.delegate)
        } catch {
            output = "error: \(error.localizedDescription)"
        }
    }
}
