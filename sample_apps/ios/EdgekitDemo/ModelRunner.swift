import CoreML
import Foundation

/// One loaded artifact. Inputs and outputs are in the order of models.json (the manifest's order).
/// `prepare` converts inputs once; `run` is what the benchmark times.
protocol ModelRunner: AnyObject {
    var runtimeName: String { get }
    var runtimeVersion: String? { get }
    var delegate: String { get }
    func prepare(_ inputs: [TensorData]) throws -> Any
    func run(_ prepared: Any) throws -> [TensorData]
}

extension ModelRunner {
    func run(inputs: [TensorData]) throws -> [TensorData] { try run(prepare(inputs)) }
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
        default:
            throw AppError("\(entry.file): runtime '\(entry.runtime)' is not in the iOS app")
        }
    }
}
