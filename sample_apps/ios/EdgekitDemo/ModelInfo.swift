import Foundation

// The model-info file `edgekit package --app ios` writes (Models/models.json). Every number the
// demos use (shapes, mean/std, quantization, labels) is decoded here; the app has no
// model-specific code.

enum ModelFiles {
    static let folder = "Models"
    static let infoFile = "models.json"
    static let kind = "edgekit.model-info"
}

struct Quantization: Decodable {
    let scale: Float
    let zeroPoint: Int
}

struct TensorInfo: Decodable {
    let name: String
    let shape: [Int]
    let dtype: String
    let quantization: Quantization?
    let role: String
    let pooling: String?  // embedding outputs: "mean" over tokens or "none"

    var elementCount: Int { shape.reduce(1, *) }
}

struct ImageInfo: Decodable {
    let input: Int
    let layout: String  // NCHW or NHWC
    let height: Int
    let width: Int
    let channels: Int
    let colorLayout: String  // RGB or BGR
    let scale: Float
    let mean: [Float]
    let std: [Float]
    let grayWeights: [Float]?
    let pixelBuffer: Bool  // a Core ML image input: raw 0..255 pixels, normalised inside the model
}

/// A stateful model (an RNN step, a decoder with a cache): output `output` of one step is fed to
/// input `input` of the next; positions in `inputs` / `outputs`.
struct StateLink: Decodable {
    let output: Int
    let input: Int
}

struct SpecialTokens: Decodable {
    let cls: String
    let sep: String
    let pad: String
    let unk: String
}

/// The tokenizer of a text model; which input takes token ids, mask or type ids is each input's `role`.
struct TextInfo: Decodable {
    let maxLength: Int
    let tokenizer: String?
    let vocabFile: String?
    let lowercase: Bool
    let specialTokens: SpecialTokens
}

struct ModelEntry: Decodable, Identifiable {
    let id: String
    let file: String
    let manifestFile: String
    let name: String
    let target: String
    let format: String
    let runtime: String  // coreml | executorch | coreai
    let precision: String?
    let task: String  // image-classification | text-classification | text-embedding | tensor
    let sizeBytes: Int
    let sha256: String?
    let flops: Int?
    let status: String?
    let method: String
    let inputs: [TensorInfo]
    let outputs: [TensorInfo]
    let state: [StateLink]
    let image: ImageInfo?
    let text: TextInfo?
    let labels: [String]?
    let topK: Int
    /// The manifest's parity block, passed through unchanged into benchmark records.
    var parity: [String: Any]? = nil

    // every stored property but parity (JSON keys in snake_case: ModelCatalog.parse converts them)
    enum CodingKeys: String, CodingKey {
        case id, file, manifestFile, name, target, format, runtime, precision, task, sizeBytes, sha256, flops
        case status, method, inputs, outputs, state, image, text, labels, topK
    }
}

struct ModelCatalog: Decodable {
    let kind: String
    let edgekitVersion: String
    var models: [ModelEntry]
    let sampleTexts: [String]

    func find(_ file: String) -> ModelEntry? { models.first { $0.file == file || $0.id == file } }

    /// Decode models.json; the free-form parity blocks are read with JSONSerialization. Its keys are
    /// snake_case and each property is the same name in camelCase, so no type spells out its keys.
    static func parse(_ data: Data) throws -> ModelCatalog {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        var catalog = try decoder.decode(ModelCatalog.self, from: data)
        guard catalog.kind == ModelFiles.kind else {
            throw AppError("\(ModelFiles.infoFile): kind is '\(catalog.kind)', expected '\(ModelFiles.kind)'")
        }
        let raw = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        let rawModels = raw?["models"] as? [[String: Any]] ?? []
        for index in catalog.models.indices where index < rawModels.count {
            catalog.models[index].parity = rawModels[index]["parity"] as? [String: Any]
        }
        return catalog
    }

    /// The catalog in the app bundle, or nil when nothing has been packaged.
    static func bundled() throws -> ModelCatalog? {
        guard let url = Bundle.main.url(forResource: ModelFiles.infoFile, withExtension: nil, subdirectory: ModelFiles.folder)
        else { return nil }
        let catalog = try parse(Data(contentsOf: url))
        return catalog.models.isEmpty ? nil : catalog
    }

    static func fileURL(_ name: String) -> URL? {
        Bundle.main.url(forResource: name, withExtension: nil, subdirectory: ModelFiles.folder)
    }
}

struct AppError: LocalizedError {
    let message: String
    init(_ message: String) { self.message = message }
    var errorDescription: String? { message }
}
