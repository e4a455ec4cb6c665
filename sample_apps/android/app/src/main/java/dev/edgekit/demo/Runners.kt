package dev.edgekit.demo

import java.io.File

object Runners {
    /** LiteRT delegate choices: "xnnpack" (CPU, default), "cpu" (CPU without XNNPACK), "gpu". */
    val LITERT_DELEGATES = listOf("xnnpack", "cpu", "gpu")

    /** The runtime models.json names for this artifact; nothing depends on the model itself. */
    fun open(entry: ModelEntry, file: File, threads: Int, delegate: String): ModelRunner = when (entry.runtime) {
        "litert" -> LiteRtRunner(entry, file, threads, delegate)
        "executorch" -> ExecuTorchRunner(entry, file, threads)
        else -> error("${entry.file}: runtime '${entry.runtime}' is not in the Android app")
    }
}
