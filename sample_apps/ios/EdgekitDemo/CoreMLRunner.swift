import CoreML
import CoreVideo
import Foundation

/// An .mlpackage / .mlmodel through Core ML, on the compute units chosen (all, CPU only, CPU+GPU,
/// CPU+Neural Engine). The package is compiled on the device at load time (part of "load"), with
/// the async `MLModel.compileModel(at:)` (iOS 16+; the synchronous form is deprecated).
final class CoreMLRunner: ModelRunner {
    private let entry: ModelEntry
    private let model: MLModel
    let runtimeName = "coreml"
    let runtimeVersion: String? = ProcessInfo.processInfo.operatingSystemVersionString
    let delegate: String

    private init(entry: ModelEntry, model: MLModel, unitsName: String) {
        self.entry = entry
        self.model = model
        self.delegate = unitsName
    }

    static func load(entry: ModelEntry, url: URL, computeUnits: MLComputeUnits, unitsName: String) async throws -> CoreMLRunner {
        let compiled = url.pathExtension == "mlmodelc" ? url : try await MLModel.compileModel(at: url)
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        let model = try MLModel(contentsOf: compiled, configuration: configuration)
        return CoreMLRunner(entry: entry, model: model, unitsName: unitsName)
    }

    private static func multiArray(_ data: TensorData) throws -> MLMultiArray {
        let shape = data.info.shape.map { NSNumber(value: $0) }
        if let floats = data.floats {
            let array = try MLMultiArray(shape: shape, dataType: .float32)
            let pointer = array.dataPointer.bindMemory(to: Float.self, capacity: floats.count)
            for i in floats.indices { pointer[i] = floats[i] }
            return array
        }
        // Core ML multi-arrays hold float32/float16/double/int32: integer inputs travel as int32.
        let ints: [Int32] = data.int32s ?? data.int64s?.map { Int32($0) } ?? data.int8s?.map { Int32($0) }
            ?? data.uint8s?.map { Int32($0) } ?? []
        let array = try MLMultiArray(shape: shape, dataType: .int32)
        let pointer = array.dataPointer.bindMemory(to: Int32.self, capacity: ints.count)
        for i in ints.indices { pointer[i] = ints[i] }
        return array
    }

    /// A Core ML image input (coremltools ImageType) takes a pixel buffer of raw 0..255 pixels;
    /// `data` holds them planar (1 x C x H x W, uint8), as models.json describes the input.
    private static func pixelBuffer(_ data: TensorData) throws -> CVPixelBuffer {
        let shape = data.info.shape
        let (channels, height, width) = (shape[1], shape[2], shape[3])
        let pixels: [UInt8] = data.uint8s ?? data.toReal().map { UInt8(max(0, min(255, $0.rounded()))) }
        let format = channels == 1 ? kCVPixelFormatType_OneComponent8 : kCVPixelFormatType_32BGRA
        var buffer: CVPixelBuffer?
        guard CVPixelBufferCreate(nil, width, height, format, nil, &buffer) == kCVReturnSuccess, let buffer else {
            throw AppError("\(data.info.name): cannot make a \(width)x\(height) pixel buffer")
        }
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        let row = CVPixelBufferGetBytesPerRow(buffer)
        let base = CVPixelBufferGetBaseAddress(buffer)!.assumingMemoryBound(to: UInt8.self)
        let plane = height * width
        for y in 0..<height {
            for x in 0..<width {
                let i = y * width + x
                if channels == 1 {
                    base[y * row + x] = pixels[i]
                } else {  // BGRA bytes from planar R, G, B
                    let p = base + y * row + x * 4
                    p[0] = pixels[2 * plane + i]; p[1] = pixels[plane + i]; p[2] = pixels[i]; p[3] = 255
                }
            }
        }
        return buffer
    }

    func prepare(_ inputs: [TensorData]) throws -> Any {
        var features = [String: MLFeatureValue]()
        for data in inputs {
            if model.modelDescription.inputDescriptionsByName[data.info.name]?.type == .image {
                features[data.info.name] = MLFeatureValue(pixelBuffer: try Self.pixelBuffer(data))
            } else {
                features[data.info.name] = MLFeatureValue(multiArray: try Self.multiArray(data))
            }
        }
        return try MLDictionaryFeatureProvider(dictionary: features)
    }

    func run(_ prepared: Any) throws -> [TensorData] {
        guard let provider = prepared as? MLFeatureProvider else { throw AppError("inputs were not prepared for Core ML") }
        let result = try model.prediction(from: provider)
        return try entry.outputs.map { spec in
            guard let array = result.featureValue(for: spec.name)?.multiArrayValue else {
                throw AppError("\(entry.file): no multi-array output named \(spec.name)")
            }
            let values = (0..<array.count).map { array[$0].floatValue }
            return TensorData(info: spec, floats: values)
        }
    }
}
