package dev.edgekit.demo

import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.TensorFlowLite
import org.tensorflow.lite.gpu.GpuDelegate
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** A .tflite through LiteRT's Interpreter: XNNPACK on the CPU by default, the GPU delegate as a switch. */
class LiteRtRunner(private val entry: ModelEntry, file: File, threads: Int, override val delegate: String) : ModelRunner {
    private val gpu: GpuDelegate? = if (delegate == "gpu") GpuDelegate() else null
    private val interpreter: Interpreter
    // Signature runner when the artifact has the signature its manifest names (edgekit's TFLite
    // target writes "serving_default"); plain tensor order otherwise.
    private val signature: String?

    override val runtimeName = "litert"
    override val runtimeVersion: String? = runCatching { TensorFlowLite.runtimeVersion() }.getOrNull()
        ?.let { "$it (litert ${BuildConfig.LITERT_VERSION})" } ?: "litert ${BuildConfig.LITERT_VERSION}"

    init {
        require(delegate in Runners.LITERT_DELEGATES) { "delegate '$delegate': choose one of ${Runners.LITERT_DELEGATES}" }
        val options = Interpreter.Options().setNumThreads(threads)
        when (delegate) {
            "gpu" -> options.addDelegate(gpu!!)
            "cpu" -> options.setUseXNNPACK(false)
            else -> options.setUseXNNPACK(true)
        }
        interpreter = Interpreter(file, options)
        signature = entry.signature?.takeIf { it in interpreter.signatureKeys }
        interpreter.allocateTensors()
    }

    override fun run(inputs: List<TensorData>): List<TensorData> {
        val sig = signature
        if (sig != null) {
            val feeds = HashMap<String, Any>()
            inputs.forEach { feeds[it.info.name] = it.byteBuffer() }
            val fetches = HashMap<String, Any>()
            val buffers = entry.outputs.map { spec ->
                val bytes = interpreter.getOutputTensorFromSignature(spec.name, sig).numBytes()
                ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder()).also { fetches[spec.name] = it }
            }
            interpreter.runSignature(feeds, fetches, sig)
            return entry.outputs.mapIndexed { i, spec -> decodeOutput(spec, buffers[i]) }
        }
        val buffers = entry.outputs.indices.map { i ->
            ByteBuffer.allocateDirect(interpreter.getOutputTensor(i).numBytes()).order(ByteOrder.nativeOrder())
        }
        val fetches = HashMap<Int, Any>()
        buffers.forEachIndexed { i, b -> fetches[i] = b }
        interpreter.runForMultipleInputsOutputs(inputs.map { it.byteBuffer() }.toTypedArray(), fetches)
        return entry.outputs.mapIndexed { i, spec -> decodeOutput(spec, buffers[i]) }
    }

    override fun close() {
        interpreter.close()
        gpu?.close()
    }
}
