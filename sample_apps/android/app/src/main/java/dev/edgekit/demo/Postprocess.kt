package dev.edgekit.demo

import kotlin.math.exp
import kotlin.math.sqrt

// Output handling for the demos: top-k over the manifest's labels, pooled embeddings. Pure Kotlin.

data class Prediction(val index: Int, val label: String, val probability: Float)

object Postprocess {
    fun softmax(logits: FloatArray): FloatArray {
        val max = logits.maxOrNull() ?: return logits
        val e = FloatArray(logits.size) { exp((logits[it] - max).toDouble()).toFloat() }
        val sum = e.sum()
        return FloatArray(e.size) { e[it] / sum }
    }

    /** The k most likely classes; labels come from models.json (their index when there are none). */
    fun topK(logits: FloatArray, k: Int, labels: List<String>?): List<Prediction> {
        val probabilities = softmax(logits)
        return probabilities.indices.sortedByDescending { probabilities[it] }.take(k).map {
            Prediction(it, labels?.getOrNull(it) ?: "class $it", probabilities[it])
        }
    }

    /** Mean over the tokens the mask keeps ([tokens] x [dim] values), then L2-normalised. */
    fun meanPool(hidden: FloatArray, mask: LongArray?, tokens: Int, dim: Int): FloatArray {
        val out = FloatArray(dim)
        var kept = 0
        for (t in 0 until tokens) {
            if (mask != null && mask[t] == 0L) continue
            kept++
            for (d in 0 until dim) out[d] += hidden[t * dim + d]
        }
        if (kept > 0) for (d in 0 until dim) out[d] /= kept.toFloat()
        return l2Normalize(out)
    }

    fun l2Normalize(v: FloatArray): FloatArray {
        val norm = sqrt(v.fold(0.0) { acc, x -> acc + x * x }).toFloat()
        return if (norm == 0f) v else FloatArray(v.size) { v[it] / norm }
    }

    fun cosine(a: FloatArray, b: FloatArray): Float {
        var dot = 0.0
        var na = 0.0
        var nb = 0.0
        for (i in a.indices) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i] }
        return if (na == 0.0 || nb == 0.0) 0f else (dot / sqrt(na * nb)).toFloat()
    }

    /** The embedding an output holds: pooled per models.json ("mean" over tokens, or "none"). */
    fun embedding(output: TensorData, pooling: String, mask: LongArray?): FloatArray {
        val values = output.toReal()
        val shape = output.info.shape
        return if (pooling == "mean" && shape.size == 3) {
            meanPool(values, mask, shape[1].toInt(), shape[2].toInt())
        } else {
            l2Normalize(values)
        }
    }
}
