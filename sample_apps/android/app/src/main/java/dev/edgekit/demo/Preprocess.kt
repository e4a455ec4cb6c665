package dev.edgekit.demo

import java.text.Normalizer

// Image and text pre-processing, driven only by models.json. Pure Kotlin (no android.*): the
// Android side hands over ARGB pixels of a bitmap already scaled to image.width x image.height.

object ImagePreprocessor {
    /**
     * ARGB pixels (row-major, [image.width] x [image.height]) -> the model's image input:
     * value = (pixel * scale - mean[c]) / std[c], in the model's layout (NCHW or NHWC) and channel
     * order (RGB or BGR); one channel uses the luma weights from models.json. Quantized inputs
     * are quantized with the input's own scale and zero point.
     */
    fun toInput(pixels: IntArray, image: ImageInfo, input: TensorInfo): TensorData {
        val h = image.height
        val w = image.width
        val c = image.channels
        require(pixels.size == h * w) { "expected ${w}x$h pixels, got ${pixels.size}" }
        val out = FloatArray(c * h * w)
        val nchw = image.layout == "NCHW"
        for (y in 0 until h) {
            for (x in 0 until w) {
                val p = pixels[y * w + x]
                val r = ((p shr 16) and 0xff).toFloat()
                val g = ((p shr 8) and 0xff).toFloat()
                val b = (p and 0xff).toFloat()
                for (ch in 0 until c) {
                    val raw = if (c == 1) {
                        val wts = image.grayWeights ?: error("1-channel image input without gray_weights")
                        wts[0] * r + wts[1] * g + wts[2] * b
                    } else {
                        val rgb = if (image.colorLayout == "BGR") 2 - ch else ch
                        when (rgb) { 0 -> r; 1 -> g; else -> b }
                    }
                    val value = (raw * image.scale - image.mean[ch]) / image.std[ch]
                    val index = if (nchw) ch * h * w + y * w + x else (y * w + x) * c + ch
                    out[index] = value
                }
            }
        }
        return TensorData.fromReal(input, out)
    }
}

data class Encoding(val tokens: List<String>, val ids: LongArray, val mask: LongArray, val typeIds: LongArray)

/** BERT-style WordPiece: lower-case (optional), strip accents, split punctuation, greedy longest match. */
class WordPieceTokenizer(vocab: List<String>, private val lowercase: Boolean, private val special: SpecialTokens) {
    private val ids: Map<String, Int> = vocab.withIndex().associate { it.value to it.index }
    val size: Int = vocab.size

    private fun id(token: String): Int = ids[token] ?: ids.getValue(special.unk)

    private fun basicTokens(text: String): List<String> {
        var t = if (lowercase) text.lowercase() else text
        if (lowercase) {
            t = Normalizer.normalize(t, Normalizer.Form.NFD).filter { Character.getType(it) != Character.NON_SPACING_MARK.toInt() }
        }
        val out = ArrayList<String>()
        val word = StringBuilder()
        fun flush() { if (word.isNotEmpty()) { out.add(word.toString()); word.setLength(0) } }
        for (ch in t) {
            when {
                ch.isWhitespace() -> flush()
                isPunctuation(ch) -> { flush(); out.add(ch.toString()) }
                else -> word.append(ch)
            }
        }
        flush()
        return out
    }

    private fun isPunctuation(ch: Char): Boolean {
        val code = ch.code
        if (code in 33..47 || code in 58..64 || code in 91..96 || code in 123..126) return true
        return when (Character.getType(ch).toByte()) {
            Character.CONNECTOR_PUNCTUATION, Character.DASH_PUNCTUATION, Character.START_PUNCTUATION,
            Character.END_PUNCTUATION, Character.INITIAL_QUOTE_PUNCTUATION, Character.FINAL_QUOTE_PUNCTUATION,
            Character.OTHER_PUNCTUATION -> true
            else -> false
        }
    }

    private fun wordPieces(word: String): List<String> {
        if (word.length > 100) return listOf(special.unk)
        val pieces = ArrayList<String>()
        var start = 0
        while (start < word.length) {
            var end = word.length
            var found: String? = null
            while (start < end) {
                val piece = (if (start > 0) "##" else "") + word.substring(start, end)
                if (ids.containsKey(piece)) { found = piece; break }
                end--
            }
            if (found == null) return listOf(special.unk)
            pieces.add(found)
            start = end
        }
        return pieces
    }

    /** [CLS] tokens [SEP], truncated and padded to [maxLength]. */
    fun encode(text: String, maxLength: Int): Encoding {
        val tokens = ArrayList<String>()
        tokens.add(special.cls)
        for (word in basicTokens(text)) tokens.addAll(wordPieces(word))
        if (tokens.size > maxLength - 1) tokens.subList(maxLength - 1, tokens.size).clear()
        tokens.add(special.sep)
        val ids = LongArray(maxLength) { id(special.pad).toLong() }
        val mask = LongArray(maxLength)
        tokens.forEachIndexed { i, tok -> ids[i] = id(tok).toLong(); mask[i] = 1 }
        return Encoding(tokens, ids, mask, LongArray(maxLength))
    }
}

/** The model's inputs for one text: each input takes the part of the encoding its role names (models.json). */
fun textInputs(entry: ModelEntry, encoding: Encoding): List<TensorData> {
    requireNotNull(entry.text) { "${entry.file} has no text input" }
    val others = randomInputs(entry)
    return entry.inputs.mapIndexed { i, info ->
        when (info.role) {
            "token_ids" -> TensorData.fromReal(info, FloatArray(info.elementCount) { encoding.ids[it].toFloat() })
            "attention_mask" -> TensorData.fromReal(info, FloatArray(info.elementCount) { encoding.mask[it].toFloat() })
            "token_type_ids" -> TensorData.fromReal(info, FloatArray(info.elementCount) { encoding.typeIds[it].toFloat() })
            else -> others[i]
        }
    }
}
