import CoreGraphics
import Foundation

// Image and text pre-processing, driven only by models.json.

enum ImagePreprocessor {
    /// RGBA bytes of `image` drawn at the model's width x height.
    static func rgba(_ image: CGImage, width: Int, height: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: width * height * 4)
        let drawn = bytes.withUnsafeMutableBytes { buffer -> Bool in
            guard let context = CGContext(
                data: buffer.baseAddress, width: width, height: height, bitsPerComponent: 8, bytesPerRow: width * 4,
                space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue)
            else { return false }
            context.interpolationQuality = .high
            context.draw(image, in: CGRect(x: 0, y: 0, width: width, height: height))
            return true
        }
        guard drawn else { throw AppError("cannot draw the image at \(width)x\(height)") }
        return bytes
    }

    /// value = (pixel * scale - mean[c]) / std[c], in the model's layout and channel order; one
    /// channel uses the luma weights from models.json. Quantized inputs are quantized.
    static func toInput(rgba: [UInt8], image: ImageInfo, input: TensorInfo) throws -> TensorData {
        let (h, w, c) = (image.height, image.width, image.channels)
        var out = [Float](repeating: 0, count: c * h * w)
        let nchw = image.layout == "NCHW"
        for y in 0..<h {
            for x in 0..<w {
                let p = (y * w + x) * 4
                let rgb = [Float(rgba[p]), Float(rgba[p + 1]), Float(rgba[p + 2])]
                for ch in 0..<c {
                    let raw: Float
                    if c == 1 {
                        guard let wts = image.grayWeights else { throw AppError("1-channel image input without gray_weights") }
                        raw = wts[0] * rgb[0] + wts[1] * rgb[1] + wts[2] * rgb[2]
                    } else {
                        raw = rgb[image.colorLayout == "BGR" ? 2 - ch : ch]
                    }
                    let index = nchw ? ch * h * w + y * w + x : (y * w + x) * c + ch
                    out[index] = (raw * image.scale - image.mean[ch]) / image.std[ch]
                }
            }
        }
        return try .fromReal(input, out)
    }
}

struct Encoding {
    let tokens: [String]
    let ids: [Int64]
    let mask: [Int64]
    let typeIds: [Int64]
}

/// BERT-style WordPiece: lower-case (optional), strip accents, split punctuation, greedy longest match.
struct WordPieceTokenizer {
    let ids: [String: Int]
    let lowercase: Bool
    let special: SpecialTokens

    init(vocab: [String], lowercase: Bool, special: SpecialTokens) {
        var ids = [String: Int]()
        for (index, token) in vocab.enumerated() where ids[token] == nil { ids[token] = index }
        self.ids = ids
        self.lowercase = lowercase
        self.special = special
    }

    private func id(_ token: String) -> Int { ids[token] ?? ids[special.unk] ?? 0 }

    private func basicTokens(_ text: String) -> [String] {
        var t = text
        if lowercase {
            t = t.lowercased().folding(options: .diacriticInsensitive, locale: nil)
        }
        var out = [String]()
        var word = ""
        for ch in t {
            if ch.isWhitespace {
                if !word.isEmpty { out.append(word); word = "" }
            } else if ch.isPunctuation || ch.isSymbol {
                if !word.isEmpty { out.append(word); word = "" }
                out.append(String(ch))
            } else {
                word.append(ch)
            }
        }
        if !word.isEmpty { out.append(word) }
        return out
    }

    private func wordPieces(_ word: String) -> [String] {
        let chars = Array(word)
        if chars.count > 100 { return [special.unk] }
        var pieces = [String]()
        var start = 0
        while start < chars.count {
            var end = chars.count
            var found: String?
            while start < end {
                let piece = (start > 0 ? "##" : "") + String(chars[start..<end])
                if ids[piece] != nil { found = piece; break }
                end -= 1
            }
            guard let piece = found else { return [special.unk] }
            pieces.append(piece)
            start = end
        }
        return pieces
    }

    /// [CLS] tokens [SEP], truncated and padded to `maxLength`.
    func encode(_ text: String, maxLength: Int) -> Encoding {
        var tokens = [special.cls] + basicTokens(text).flatMap(wordPieces)
        if tokens.count > maxLength - 1 { tokens = Array(tokens.prefix(maxLength - 1)) }
        tokens.append(special.sep)
        var ids = [Int64](repeating: Int64(id(special.pad)), count: maxLength)
        var mask = [Int64](repeating: 0, count: maxLength)
        for (i, token) in tokens.enumerated() { ids[i] = Int64(id(token)); mask[i] = 1 }
        return Encoding(tokens: tokens, ids: ids, mask: mask, typeIds: [Int64](repeating: 0, count: maxLength))
    }
}

/// The model's inputs for one text: each input takes the part of the encoding its role names (models.json).
func textInputs(_ entry: ModelEntry, _ encoding: Encoding) throws -> [TensorData] {
    guard entry.text != nil else { throw AppError("\(entry.file) has no text input") }
    let others = try randomInputs(entry)
    return try entry.inputs.indices.map { (i: Int) -> TensorData in
        let info = entry.inputs[i]
        switch info.role {
        case "token_ids": return try .fromReal(info, encoding.ids.map { Float($0) })
        case "attention_mask": return try .fromReal(info, encoding.mask.map { Float($0) })
        case "token_type_ids": return try .fromReal(info, encoding.typeIds.map { Float($0) })
        default: return others[i]
        }
    }
}
