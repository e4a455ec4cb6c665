#if canImport(ExecuTorch)
import ExecuTorch
import Foundation

/// A .pte through ExecuTorch's Module (linked by project-executorch.yml). The delegates baked into
/// the program (XNNPACK, Core ML) run as exported. API as of the pinned swiftpm-1.5.0 package
/// (sample_apps/api_surface.json: Module(filePath:), load(_:), execute(_:_:) -> [Value],
/// Value.anyTensor, AnyTensor.asTensor(), Tensor<T>.scalars()).
final class ExecuTorchRunner: ModelRunner {
    private let entry: ModelEntry
    private let module: Module
    let runtimeName = "executorch"
    let runtimeVersion: String? = "1.5.0 (swiftpm-1.5.0)"
    let delegate = "program"

    init(entry: ModelEntry, url: URL) throws {
        self.entry = entry
        module = Module(filePath: url.path)
        try module.load(entry.method)  // load now, so that the first timed run does not pay for it
    }

    func prepare(_ inputs: [TensorData]) throws -> Any {
        try inputs.map { data -> Value in
            let shape = data.info.shape
            if let v = data.floats { return Value(Tensor<Float>(v, shape: shape)) }
            if let v = data.int64s { return Value(Tensor<Int64>(v, shape: shape)) }
            if let v = data.int32s { return Value(Tensor<Int32>(v, shape: shape)) }
            if let v = data.int8s { return Value(Tensor<Int8>(v, shape: shape)) }
            if let v = data.uint8s { return Value(Tensor<UInt8>(v, shape: shape)) }
            throw AppError("\(data.info.name): no values")
        }
    }

    func run(_ prepared: Any) throws -> [TensorData] {
        guard let values = prepared as? [Value] else { throw AppError("inputs were not prepared for ExecuTorch") }
        let outputs: [Value] = try module.execute(entry.method, values)
        return try entry.outputs.enumerated().map { index, spec in
            guard index < outputs.count, let tensor = outputs[index].anyTensor else {
                throw AppError("\(entry.file): output \(index) is not a tensor")
            }
            if let t: Tensor<Float> = tensor.asTensor() { return TensorData(info: spec, floats: t.scalars()) }
            if let t: Tensor<Int64> = tensor.asTensor() { return TensorData(info: spec, int64s: t.scalars()) }
            if let t: Tensor<Int32> = tensor.asTensor() { return TensorData(info: spec, int32s: t.scalars()) }
            if let t: Tensor<Int8> = tensor.asTensor() { return TensorData(info: spec, int8s: t.scalars()) }
            if let t: Tensor<UInt8> = tensor.asTensor() { return TensorData(info: spec, uint8s: t.scalars()) }
            throw AppError("\(spec.name): output dtype not handled by the demo")
        }
    }
}
#endif
