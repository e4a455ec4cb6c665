import CoreML
import Foundation

/// One loaded artifact. Inputs and outputs are in the order of models.json (the manifest's order).
/// `prepare` converts inputs once; `run` is what the benchmark times.
protocol ModelRunner: AnyObject {
    var runtimeName: String { get }
    var runtimeVersion: String? { get }
    var delegate: String { get }
    func prepare(_ inputs: [TensorData]) throws -> Any
    func run(_ prepared: Any) async throws -> [TensorData]  // async for Core AI; the others run synchronously
}

extension ModelRunner {
    func run(inputs: [TensorData]) async throws -> [TensorData] { try await run(prepare(inputs)) }
}

enum Runners {
    /// Core ML compute-unit choices (the "delegate" of a Core ML run).
    static let computeUnits: [String: MLComputeUnits] = [
        "all": .all, "cpuOnly": .cpuOnly, "cpuAndGPU": .cpuAndGPU, "cpuAndNeuralEngine": .cpuAndNeuralEngine,
    ]
    static let computeUnitNames = ["all", "cpuAndNeuralEngine", "cpuAndGPU", "cpuOnly"]

    /// The runtime models.json names for this artifact; nothing depends on the model itself.
    static func open(_ entry: ModelEntry, url: URL, computeUnits: String, threads: Int) async throws -> ModelRunner {
        switch entry.runtime {
        case "coreml":
            guard let units = Runners.computeUnits[computeUnits] else {
                throw AppError("compute units '\(computeUnits)': choose one of \(computeUnitNames.joined(separator: ", "))")
            }
            return try await CoreMLRunner.load(entry: entry, url: url, computeUnits: units, unitsName: computeUnits)
        case "executorch":
            #if canImport(ExecuTorch)
            return try ExecuTorchRunner(entry: entry, url: url)
            #else
            throw AppError("\(entry.file): this build has no ExecuTorch; build with project-executorch.yml (iOS 17+)")
            #endif
        case "coreai":
            #if canImport(CoreAI)
            if #available(iOS 27.0, *) { return try await CoreAIRunner.load(entry: entry, url: url) }
            throw AppError("\(entry.file): Core AI needs iOS 27 or newer")
            #else
            throw AppError("\(entry.file): this build has no Core AI; build with the iOS 27 SDK (Xcode 27)")
            #endif
        default:
            throw AppError("\(entry.file): runtime '\(entry.runtime)' is not in the iOS app")
        }
    }
}
