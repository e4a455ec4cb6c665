package dev.edgekit.demo

import org.json.JSONArray
import org.json.JSONObject

// The model-info file `edgekit package` writes (assets/edgekit/models.json). Every number the demos
// use (shapes, mean/std, quantization, labels) is read here; the app has no model-specific code.
// Pure Kotlin + org.json (no android.* import), so it compiles and runs on a plain JVM as well.

const val MODELS_DIR = "edgekit"
const val MODEL_INFO_FILE = "models.json"
const val MODEL_INFO_KIND = "edgekit.model-info"

data class Quantization(val scale: Float, val zeroPoint: Int)

data class TensorInfo(
    val name: String,
    val shape: LongArray,
    val dtype: String,
    val quantization: Quantization?,
    val role: String,
    val pooling: String?, // embedding outputs: "mean" over tokens or "none"
) {
    val elementCount: Int get() = shape.fold(1L) { acc, d -> acc * d }.toInt()
}

data class ImageInfo(
    val input: Int,
    val layout: String, // NCHW or NHWC
    val height: Int,
    val width: Int,
    val channels: Int,
    val colorLayout: String, // RGB or BGR
    val scale: Float,
    val mean: FloatArray,
    val std: FloatArray,
    val grayWeights: FloatArray?,
)

// A stateful model (an RNN step, a decoder with a cache): output `output` of one step is fed to
// input `input` of the next; positions in `inputs` / `outputs`.
data class StateLink(val output: Int, val input: Int)

data class SpecialTokens(val cls: String, val sep: String, val pad: String, val unk: String)

data class TextInfo(
    val idsInput: Int,
    val maskInput: Int?,
    val typeIdsInput: Int?,
    val maxLength: Int,
    val tokenizer: String?,
    val vocabFile: String?,
    val lowercase: Boolean,
    val specialTokens: SpecialTokens,
)

data class ModelEntry(
    val id: String,
    val file: String,
    val manifestFile: String,
    val name: String,
    val target: String,
    val format: String,
    val runtime: String, // litert | executorch
    val precision: String?,
    val task: String, // image-classification | text-classification | text-embedding | tensor
    val sizeBytes: Long,
    val sha256: String?,
    val flops: Long?,
    val status: String?,
    val signature: String?,
    val method: String,
    val inputs: List<TensorInfo>,
    val outputs: List<TensorInfo>,
    val state: List<StateLink>,
    val image: ImageInfo?,
    val text: TextInfo?,
    val labels: List<String>?,
    val topK: Int,
    val parity: JSONObject?,
)

data class ModelCatalog(
    val edgekitVersion: String,
    val models: List<ModelEntry>,
    val sampleTexts: List<String>,
) {
    fun find(file: String): ModelEntry? = models.firstOrNull { it.file == file || it.id == file }
}

private fun JSONObject.stringOrNull(key: String): String? = if (isNull(key)) null else getString(key)

private fun JSONObject.intOrNull(key: String): Int? = if (isNull(key)) null else getInt(key)

private fun JSONObject.longOrNull(key: String): Long? = if (isNull(key)) null else getLong(key)

private fun JSONArray.floats(): FloatArray = FloatArray(length()) { getDouble(it).toFloat() }

private fun JSONArray.strings(): List<String> = List(length()) { getString(it) }

object ModelInfoParser {
    fun parse(text: String): ModelCatalog {
        val root = JSONObject(text)
        val kind = root.getString("kind")
        require(kind == MODEL_INFO_KIND) { "$MODEL_INFO_FILE: kind is '$kind', expected '$MODEL_INFO_KIND'" }
        val models = root.getJSONArray("models")
        return ModelCatalog(
            edgekitVersion = root.getString("edgekit_version"),
            models = List(models.length()) { parseModel(models.getJSONObject(it)) },
            sampleTexts = root.getJSONArray("sample_texts").strings(),
        )
    }

    private fun parseTensor(obj: JSONObject): TensorInfo {
        val shape = obj.getJSONArray("shape")
        val quant = if (obj.isNull("quantization")) null else obj.getJSONObject("quantization")
        return TensorInfo(
            name = obj.getString("name"),
            shape = LongArray(shape.length()) { shape.getLong(it) },
            dtype = obj.getString("dtype"),
            quantization = quant?.let { Quantization(it.getDouble("scale").toFloat(), it.getInt("zero_point")) },
            role = obj.getString("role"),
            pooling = obj.stringOrNull("pooling"),
        )
    }

    private fun parseImage(obj: JSONObject) = ImageInfo(
        input = obj.getInt("input"),
        layout = obj.getString("layout"),
        height = obj.getInt("height"),
        width = obj.getInt("width"),
        channels = obj.getInt("channels"),
        colorLayout = obj.getString("color_layout"),
        scale = obj.getDouble("scale").toFloat(),
        mean = obj.getJSONArray("mean").floats(),
        std = obj.getJSONArray("std").floats(),
        grayWeights = if (obj.isNull("gray_weights")) null else obj.getJSONArray("gray_weights").floats(),
    )

    private fun parseText(obj: JSONObject): TextInfo {
        val special = obj.getJSONObject("special_tokens")
        return TextInfo(
            idsInput = obj.getInt("ids_input"),
            maskInput = obj.intOrNull("mask_input"),
            typeIdsInput = obj.intOrNull("type_ids_input"),
            maxLength = obj.getInt("max_length"),
            tokenizer = obj.stringOrNull("tokenizer"),
            vocabFile = obj.stringOrNull("vocab_file"),
            lowercase = obj.getBoolean("lowercase"),
            specialTokens = SpecialTokens(
                cls = special.getString("cls"),
                sep = special.getString("sep"),
                pad = special.getString("pad"),
                unk = special.getString("unk"),
            ),
        )
    }

    private fun parseState(links: JSONArray): List<StateLink> = List(links.length()) {
        val link = links.getJSONObject(it)
        StateLink(output = link.getInt("output"), input = link.getInt("input"))
    }

    private fun parseModel(obj: JSONObject): ModelEntry {
        val inputs = obj.getJSONArray("inputs")
        val outputs = obj.getJSONArray("outputs")
        return ModelEntry(
            id = obj.getString("id"),
            file = obj.getString("file"),
            manifestFile = obj.getString("manifest_file"),
            name = obj.getString("name"),
            target = obj.getString("target"),
            format = obj.getString("format"),
            runtime = obj.getString("runtime"),
            precision = obj.stringOrNull("precision"),
            task = obj.getString("task"),
            sizeBytes = obj.getLong("size_bytes"),
            sha256 = obj.stringOrNull("sha256"),
            flops = obj.longOrNull("flops"),
            status = obj.stringOrNull("status"),
            signature = obj.stringOrNull("signature"),
            method = obj.getString("method"),
            inputs = List(inputs.length()) { parseTensor(inputs.getJSONObject(it)) },
            outputs = List(outputs.length()) { parseTensor(outputs.getJSONObject(it)) },
            state = parseState(obj.getJSONArray("state")),
            image = if (obj.isNull("image")) null else parseImage(obj.getJSONObject("image")),
            text = if (obj.isNull("text")) null else parseText(obj.getJSONObject("text")),
            labels = if (obj.isNull("labels")) null else obj.getJSONArray("labels").strings(),
            topK = obj.getInt("top_k"),
            parity = if (obj.isNull("parity")) null else obj.getJSONObject("parity"),
        )
    }
}
