import Foundation

struct Prediction: Identifiable {
    let index: Int
    let label: String
    let probability: Float
    var id: Int { index }
}

// Output handling for the demos: top-k over the manifest's labels, pooled embeddings.
enum Postprocess {
    static func softmax(_ logits: [Float]) -> [Float] {
        guard let top = logits.max() else { return logits }
        let e = logits.map { Float(exp(Double($0 - top))) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }

    /// The k most likely classes; labels come from models.json (their index when there are none).
    static func topK(_ logits: [Float], k: Int, labels: [String]?) -> [Prediction] {
        let p = softmax(logits)
        return p.indices.sorted { p[$0] > p[$1] }.prefix(k).map { i in
            let label = labels.flatMap { i < $0.count ? $0[i] : nil } ?? "class \(i)"
            return Prediction(index: i, label: label, probability: p[i])
        }
    }

    static func l2Normalize(_ v: [Float]) -> [Float] {
        let norm = sqrt(v.reduce(0) { $0 + $1 * $1 })
        return norm == 0 ? v : v.map { $0 / norm }
    }

    /// Mean over the tokens the mask keeps (`tokens` x `dim` values), then L2-normalised.
    static func meanPool(_ hidden: [Float], mask: [Int64]?, tokens: Int, dim: Int) -> [Float] {
        var out = [Float](repeating: 0, count: dim)
        var kept = 0
        for t in 0..<tokens where mask == nil || mask![t] != 0 {
            kept += 1
            for d in 0..<dim { out[d] += hidden[t * dim + d] }
        }
        if kept > 0 { out = out.map { $0 / Float(kept) } }
        return l2Normalize(out)
    }

    static func cosine(_ a: [Float], _ b: [Float]) -> Float {
        var dot: Float = 0, na: Float = 0, nb: Float = 0
        for i in a.indices { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i] }
        return na == 0 || nb == 0 ? 0 : dot / (na * nb).squareRoot()
    }

    /// The embedding an output holds, pooled as models.json says ("mean" over tokens, or "none").
    static func embedding(_ output: TensorData, mask: [Int64]?) -> [Float] {
        let values = output.toReal()
        let shape = output.info.shape
        if output.info.pooling == "mean" && shape.count == 3 {
            return meanPool(values, mask: mask, tokens: shape[1], dim: shape[2])
        }
        return l2Normalize(values)
    }
}
