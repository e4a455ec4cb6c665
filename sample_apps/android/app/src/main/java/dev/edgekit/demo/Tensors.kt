package dev.edgekit.demo

import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.roundToInt

// Tensor values in the artifact's own dtype, and the conversions every runtime shares.
// Pure Kotlin (no android.*).

class TensorData private constructor(
    val info: TensorInfo,
    val floats: FloatArray? = null, // float32 / float16 (widened)
    val bytes: ByteArray? = null, // int8 / uint8 / bool
    val ints: IntArray? = null, // int32
    val longs: LongArray? = null, // int64
) {
    companion object {
        fun ofFloats(info: TensorInfo, values: FloatArray) = TensorData(info, floats = values)
        fun ofBytes(info: TensorInfo, values: ByteArray) = TensorData(info, bytes = values)
        fun ofInts(info: TensorInfo, values: IntArray) = TensorData(info, ints = values)
        fun ofLongs(info: TensorInfo, values: LongArray) = TensorData(info, longs = values)

        /** Real values -> this tensor's dtype, quantizing with the manifest's scale and zero point. */
        fun fromReal(info: TensorInfo, values: FloatArray): TensorData = when (info.dtype) {
            "float32", "float16" -> ofFloats(info, values)
            "int8", "uint8" -> {
                val q = info.quantization
                    ?: error("${info.name}: ${info.dtype} input without quantization parameters")
                val (lo, hi) = if (info.dtype == "int8") -128 to 127 else 0 to 255
                ofBytes(info, ByteArray(values.size) {
                    ((values[it] / q.scale).roundToInt() + q.zeroPoint).coerceIn(lo, hi).toByte()
                })
            }
            "int32" -> ofInts(info, IntArray(values.size) { values[it].roundToInt() })
            "int64" -> ofLongs(info, LongArray(values.size) { values[it].roundToInt().toLong() })
            else -> error("${info.name}: unsupported input dtype ${info.dtype}")
        }
    }

    /** Real values: dequantized with the manifest's scale and zero point where the tensor is integer. */
    fun toReal(): FloatArray {
        floats?.let { return it }
        ints?.let { a -> return FloatArray(a.size) { a[it].toFloat() } }
        longs?.let { a -> return FloatArray(a.size) { a[it].toFloat() } }
        val raw = bytes ?: return FloatArray(0)
        val unsigned = info.dtype == "uint8" || info.dtype == "bool"
        val q = info.quantization
        return FloatArray(raw.size) {
            val v = if (unsigned) raw[it].toInt() and 0xff else raw[it].toInt()
            if (q != null) (v - q.zeroPoint) * q.scale else v.toFloat()
        }
    }

    private var cachedBuffer: ByteBuffer? = null

    /**
     * A direct, native-order buffer holding the values, made once and rewound on every call: the
     * benchmark feeds the same inputs run after run and times the model, not the copy.
     */
    fun byteBuffer(): ByteBuffer {
        val buffer = cachedBuffer ?: toByteBuffer().also { cachedBuffer = it }
        buffer.rewind()
        return buffer
    }

    private fun toByteBuffer(): ByteBuffer {
        val size = elementSize(info.dtype) * info.elementCount
        val buffer = ByteBuffer.allocateDirect(size).order(ByteOrder.nativeOrder())
        when {
            floats != null -> floats.forEach { buffer.putFloat(it) }
            bytes != null -> buffer.put(bytes)
            ints != null -> ints.forEach { buffer.putInt(it) }
            longs != null -> longs.forEach { buffer.putLong(it) }
        }
        buffer.rewind()
        return buffer
    }
}

fun elementSize(dtype: String): Int = when (dtype) {
    "float32", "int32" -> 4
    "int64" -> 8
    "float16" -> 2
    "int8", "uint8", "bool" -> 1
    else -> error("unsupported dtype $dtype")
}

/** Decode a runtime's output bytes (native order) as the manifest's dtype says. */
fun decodeOutput(info: TensorInfo, buffer: ByteBuffer): TensorData {
    buffer.order(ByteOrder.nativeOrder()).rewind()
    val count = buffer.remaining() / elementSize(info.dtype)
    return when (info.dtype) {
        "float32" -> TensorData.ofFloats(info, FloatArray(count) { buffer.getFloat() })
        "int32" -> TensorData.ofInts(info, IntArray(count) { buffer.getInt() })
        "int64" -> TensorData.ofLongs(info, LongArray(count) { buffer.getLong() })
        "int8", "uint8", "bool" -> TensorData.ofBytes(info, ByteArray(count) { buffer.get() })
        else -> error("${info.name}: unsupported output dtype ${info.dtype}")
    }
}

/**
 * Inputs for benchmarking and for models with no demo: reproducible values of the right dtype.
 * Token ids stay below [idLimit] (the vocabulary size when one is packaged), masks are all ones,
 * token type ids zero; real-valued inputs are uniform in [-1, 1] (quantized where the input is).
 */
fun randomInputs(entry: ModelEntry, seed: Long = 0L, idLimit: Int = 100): List<TensorData> {
    val random = java.util.Random(seed)
    return entry.inputs.map { info ->
        val n = info.elementCount
        when (info.role) {
            "attention_mask" -> TensorData.fromReal(info, FloatArray(n) { 1f })
            "token_type_ids" -> TensorData.fromReal(info, FloatArray(n) { 0f })
            "token_ids" -> TensorData.fromReal(info, FloatArray(n) { random.nextInt(idLimit).toFloat() })
            else -> if (info.dtype == "bool") {
                TensorData.ofBytes(info, ByteArray(n) { 1 })
            } else {
                TensorData.fromReal(info, FloatArray(n) { random.nextFloat() * 2f - 1f })
            }
        }
    }
}

/**
 * One step of a stateful model (models.json "state"): each linked input takes output `link.output`
 * of the previous step, converted through real values to the input's own dtype; at the first step
 * (no previous outputs) it is zero, the usual initial state of an RNN or an empty cache.
 */
fun feedState(inputs: List<TensorData>, previous: List<TensorData>?, links: List<StateLink>): List<TensorData> {
    val fed = inputs.toMutableList()
    for (link in links) {
        val info = inputs[link.input].info
        val values = previous?.get(link.output)?.toReal() ?: FloatArray(info.elementCount)
        require(values.size == info.elementCount) {
            "state: output ${link.output} has ${values.size} values, input ${info.name} takes ${info.elementCount}"
        }
        fed[link.input] = TensorData.fromReal(info, values)
    }
    return fed
}
