import Foundation

/// Tensor values in the artifact's own dtype (the manifest's), and the conversions every runtime shares.
struct TensorData {
    let info: TensorInfo
    var floats: [Float]? = nil  // float32 / float16
    var int8s: [Int8]? = nil
    var uint8s: [UInt8]? = nil
    var int32s: [Int32]? = nil
    var int64s: [Int64]? = nil

    /// Real values -> this tensor's dtype, quantizing with the manifest's scale and zero point.
    static func fromReal(_ info: TensorInfo, _ values: [Float]) throws -> TensorData {
        switch info.dtype {
        case "float32", "float16":
            return TensorData(info: info, floats: values)
        case "int8", "uint8":
            // No quantization: raw 8-bit values (edgekit package allows that only for Core ML pixel inputs).
            let q = info.quantization ?? Quantization(scale: 1, zeroPoint: 0)
            let (lo, hi): (Float, Float) = info.dtype == "int8" ? (-128, 127) : (0, 255)
            let quantized = values.map { min(max(($0 / q.scale).rounded() + Float(q.zeroPoint), lo), hi) }
            return info.dtype == "int8"
                ? TensorData(info: info, int8s: quantized.map { Int8($0) })
                : TensorData(info: info, uint8s: quantized.map { UInt8($0) })
        case "int32":
            return TensorData(info: info, int32s: values.map { Int32($0.rounded()) })
        case "int64":
            return TensorData(info: info, int64s: values.map { Int64($0.rounded()) })
        default:
            throw AppError("\(info.name): unsupported input dtype \(info.dtype)")
        }
    }

    /// Real values, dequantized with the manifest's scale and zero point where the tensor is integer.
    func toReal() -> [Float] {
        if let floats { return floats }
        if let int32s { return int32s.map { Float($0) } }
        if let int64s { return int64s.map { Float($0) } }
        let raw: [Float] = int8s?.map { Float($0) } ?? uint8s?.map { Float($0) } ?? []
        guard let q = info.quantization else { return raw }
        return raw.map { ($0 - Float(q.zeroPoint)) * q.scale }
    }
}

/// A small deterministic generator (SplitMix64), so that benchmark inputs are the same on every run.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Inputs for benchmarking and for models with no demo: token ids below `idLimit`, masks of ones,
/// token type ids zero; real-valued inputs uniform in [-1, 1] (quantized where the input is).
func randomInputs(_ entry: ModelEntry, seed: UInt64 = 0, idLimit: Int = 100) throws -> [TensorData] {
    var rng = SeededGenerator(seed: seed)
    return try entry.inputs.map { info in
        let n = info.elementCount
        switch info.role {
        case "attention_mask": return try .fromReal(info, [Float](repeating: 1, count: n))
        case "token_type_ids": return try .fromReal(info, [Float](repeating: 0, count: n))
        case "token_ids": return try .fromReal(info, (0..<n).map { _ in Float(Int.random(in: 0..<idLimit, using: &rng)) })
        default: return try .fromReal(info, (0..<n).map { _ in Float.random(in: -1...1, using: &rng) })
        }
    }
}

/// One step of a stateful model (models.json "state"): each linked input takes output `link.output`
/// of the previous step, converted through real values to the input's own dtype; at the first step
/// (no previous outputs) it is zero, the usual initial state of an RNN or an empty cache.
func feedState(_ inputs: [TensorData], previous: [TensorData]?, links: [StateLink]) throws -> [TensorData] {
    var fed = inputs
    for link in links {
        let info = inputs[link.input].info
        let values = previous.map { $0[link.output].toReal() } ?? [Float](repeating: 0, count: info.elementCount)
        guard values.count == info.elementCount else {
            throw AppError("state: output \(link.output) has \(values.count) values, input \(info.name) takes \(info.elementCount)")
        }
        fed[link.input] = try .fromReal(info, values)
    }
    return fed
}
