#if canImport(CoreAI)
import CoreAI
import Foundation

/// An .aimodel through Core AI (iOS 27+): its entry function (models.json `method`, the program's
/// `main` graph) on the device's own choice of compute units. Only calls documented in Apple's Core AI
/// reference (developer.apple.com/documentation/coreai; the pages are listed in README.md):
/// `AIModel(contentsOf:)`, `loadFunction(named:)`, `NDArray(scalars:shape:)`, `run(inputs:)`,
/// `Outputs.remove(_:)`, `InferenceValue.ndArray`, `NDArray.view(as:)`, `View.isContiguous`,
/// `View.withUnsafePointer(_:)`. Never compiled here (no Swift toolchain on edgekit's machine: README.md).
@available(iOS 27.0, *)
final class CoreAIRunner: ModelRunner {
    private let entry: ModelEntry
    private let function: InferenceFunction
    let runtimeName = "coreai"
    let runtimeVersion: String? = ProcessInfo.processInfo.operatingSystemVersionString
    let delegate = "default"  // Core AI picks CPU / GPU / Neural Engine itself; no choice is passed

    private init(entry: ModelEntry, function: InferenceFunction) {
        self.entry = entry
        self.function = function
    }

    /// Loads the asset (Core AI specializes it for this device: part of "load") and its function.
    static func load(entry: ModelEntry, url: URL) async throws -> CoreAIRunner {
        let model = try await AIModel(contentsOf: url)
        guard let function = try model.loadFunction(named: entry.method) else {
            throw AppError("\(entry.file): no function '\(entry.method)' in the Core AI model")
        }
        return CoreAIRunner(entry: entry, function: function)
    }

    /// One NDArray per input, in the manifest's dtype (edgekit's Core AI programs take float32,
    /// float16 (fp16 programs) or int32 token ids).
    func prepare(_ inputs: [TensorData]) throws -> Any {
        var feeds = [String: NDArray]()
        for data in inputs {
            let shape = data.info.shape
            switch data.info.dtype {
            case "float32":
                feeds[data.info.name] = NDArray(scalars: data.toReal(), shape: shape)
            case "float16":
                feeds[data.info.name] = NDArray(scalars: data.toReal().map { Float16($0) }, shape: shape)
            case "int32", "int64":  // Core AI programs from coreai-torch take int32 ids
                let ints: [Int32] = data.int32s ?? data.int64s?.map { Int32($0) } ?? data.toReal().map { Int32($0) }
                feeds[data.info.name] = NDArray(scalars: ints, shape: shape)
            default:
                throw AppError("\(data.info.name): input dtype \(data.info.dtype) not handled by the Core AI runner")
            }
        }
        return feeds
    }

    func run(_ prepared: Any) async throws -> [TensorData] {
        guard let feeds = prepared as? [String: NDArray] else { throw AppError("inputs were not prepared for Core AI") }
        var outputs = try await function.run(inputs: feeds)
        var results = [TensorData]()
        for spec in entry.outputs {  // a plain loop: `outputs` is consumed value by value
            guard let value = outputs.remove(spec.name), let array = value.ndArray else {
                throw AppError("\(entry.file): output \(spec.name) is missing or not an array")
            }
            switch spec.dtype {
            case "float32": results.append(TensorData(info: spec, floats: try Self.elements(array, Float.self, spec)))
            case "float16":
                results.append(TensorData(info: spec, floats: try Self.elements(array, Float16.self, spec).map { Float($0) }))
            case "int32": results.append(TensorData(info: spec, int32s: try Self.elements(array, Int32.self, spec)))
            default: throw AppError("\(spec.name): output dtype \(spec.dtype) not handled by the Core AI runner")
            }
        }
        return results
    }

    /// The elements of a row-major array (the layout `NDArray(scalars:shape:)` and Core AI's outputs
    /// use); a strided one is refused rather than read wrongly.
    private static func elements<T: BitwiseCopyable>(_ array: NDArray, _ type: T.Type, _ spec: TensorInfo) throws -> [T] {
        let view = array.view(as: type)
        guard view.isContiguous else { throw AppError("\(spec.name): a strided output is not read by the demo") }
        return view.withUnsafePointer { pointer, shape, _ in
            var count = 1
            for index in 0..<shape.count { count *= shape[index] }
            return Array(UnsafeBufferPointer(start: pointer, count: count))
        }
    }
}
#endif
