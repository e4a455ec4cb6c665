package dev.edgekit.demo

import android.content.Context
import java.io.File
import java.io.FileNotFoundException

/** Reads assets/edgekit/models.json and hands out model files the runtimes can open by path. */
class AppModels(private val context: Context) {
    /** The packaged catalog, or null when `edgekit package` has not put any model in the app. */
    fun catalog(): ModelCatalog? = try {
        val text = context.assets.open("$MODELS_DIR/$MODEL_INFO_FILE").bufferedReader().use { it.readText() }
        ModelInfoParser.parse(text).takeIf { it.models.isNotEmpty() }
    } catch (e: FileNotFoundException) {
        null
    }

    /**
     * ExecuTorch and LiteRT open models by path, so an asset is copied once into app storage
     * (the copy is redone when the size differs, i.e. after re-packaging).
     */
    fun file(entry: ModelEntry): File = extract("$MODELS_DIR/${entry.file}", entry.sizeBytes)

    fun vocabulary(text: TextInfo): List<String>? = text.vocabFile?.let { name ->
        context.assets.open("$MODELS_DIR/$name").bufferedReader().use { it.readLines() }
    }

    private fun extract(assetPath: String, expectedSize: Long): File {
        val out = File(context.filesDir, assetPath)
        if (out.exists() && out.length() == expectedSize) return out
        out.parentFile?.mkdirs()
        val tmp = File(out.path + ".part")
        context.assets.open(assetPath).use { input -> tmp.outputStream().use { input.copyTo(it) } }
        if (!tmp.renameTo(out)) error("cannot write ${out.path}")
        return out
    }

    /** Sample images bundled in assets/samples (any .jpg/.png dropped there shows up). */
    fun sampleImages(): List<String> = (context.assets.list(SAMPLES_DIR) ?: emptyArray())
        .filter { it.endsWith(".jpg", true) || it.endsWith(".jpeg", true) || it.endsWith(".png", true) }
        .sorted()
        .map { "$SAMPLES_DIR/$it" }

    companion object {
        const val SAMPLES_DIR = "samples"
    }
}
