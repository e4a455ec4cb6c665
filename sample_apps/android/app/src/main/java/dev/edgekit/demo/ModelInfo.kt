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

// The tokenizer of a text model; which input takes token ids, mask or type ids is each input's `role`.
data class TextInfo(
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

private fun JSONObject.longOrNull(key: String): Long? = if (isNull(key)) null else getLong(key)

private fun JSONArray.floats(): FloatArray = FloatArray(length()) { getDouble(it).toFloat() }

private fun JSONArray.strings(): List<String> = List(length()) { getString(it) }

// One reader for every list of objects and every optional object in the file.
private fun <T> JSONObject.objects(key: String, parse: (JSONObject) -> T): List<T> {
    val array = getJSONArray(key)
    return List(array.length()) { parse(array.getJSONObject(it)) }
}

private fun <T> JSONObject.objectOrNull(key: String, parse: (JSONObject) -> T): T? =
    if (isNull(key)) null else parse(getJSONObject(key))

object ModelInfoParser {
    fun parse(text: String): ModelCatalog {
        val root = JSONObject(text)
        val kind = root.getString("kind")
        require(kind == MODEL_INFO_KIND) { "$MODEL_INFO_FILE: kind is '$kind', expected '$MODEL_INFO_KIND'" }
        return ModelCatalog(
            edgekitVersion = root.getString("edgekit_version"),
            models = root.objects("models") { parseModel(it) },
            sampleTexts = root.getJSONArray("sample_texts").strings(),
        )
    }

    private fun parseTensor(obj: JSONObject): TensorInfo {
        val shape = obj.getJSONArray("shape")
        return TensorInfo(
            name = obj.getString("name"),
            shape = LongArray(shape.length()) { shape.getLong(it) },
            dtype = obj.getString("dtype"),
            quantization = obj.objectOrNull("quantization") { Quantization(it.getDouble("scale").toFloat(), it.getInt("zero_point")) },
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

    private fun parseModel(obj: JSONObject): ModelEntry {
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
            inputs = obj.objects("inputs") { parseTensor(it) },
            outputs = obj.objects("outputs") { parseTensor(it) },
            state = obj.objects("state") { StateLink(output = it.getInt("output"), input = it.getInt("input")) },
            image = obj.objectOrNull("image") { parseImage(it) },
            text = obj.objectOrNull("text") { parseText(it) },
            labels = if (obj.isNull("labels")) null else obj.getJSONArray("labels").strings(),
            topK = obj.getInt("top_k"),
            parity = obj.objectOrNull("parity") { it },
        )
    }
}
