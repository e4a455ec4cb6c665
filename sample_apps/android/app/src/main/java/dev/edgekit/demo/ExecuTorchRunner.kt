package dev.edgekit.demo

import org.pytorch.executorch.DType
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.io.File

/** A .pte through ExecuTorch's Module: the delegates baked into the program (XNNPACK) run as exported. */
class ExecuTorchRunner(private val entry: ModelEntry, file: File, threads: Int) : ModelRunner {
    private val module: Module = Module.load(file.absolutePath, Module.LOAD_MODE_MMAP, threads)

    override val runtimeName = "executorch"
    override val runtimeVersion: String = BuildConfig.EXECUTORCH_VERSION
    override val delegate = "program"

    init {
        module.loadMethod(entry.method) // load now, so that the first timed run does not pay for it
    }

    private fun toTensor(data: TensorData): Tensor {
        val shape = data.info.shape
        return when {
            data.floats != null -> Tensor.fromBlob(data.floats, shape)
            data.longs != null -> Tensor.fromBlob(data.longs, shape)
            data.ints != null -> Tensor.fromBlob(data.ints, shape)
            data.bytes != null && data.info.dtype == "int8" -> Tensor.fromBlob(data.bytes, shape)
            data.bytes != null -> Tensor.fromBlobUnsigned(data.bytes, shape)
            else -> error("${data.info.name}: no values")
        }
    }

    private fun fromTensor(tensor: Tensor, spec: TensorInfo): TensorData = when (tensor.dtype()) {
        DType.FLOAT, DType.HALF -> TensorData.ofFloats(spec, tensor.dataAsFloatArray)
        DType.INT64 -> TensorData.ofLongs(spec, tensor.dataAsLongArray)
        DType.INT32 -> TensorData.ofInts(spec, tensor.dataAsIntArray)
        DType.INT8 -> TensorData.ofBytes(spec, tensor.dataAsByteArray)
        DType.UINT8 -> TensorData.ofBytes(spec, tensor.dataAsUnsignedByteArray)
        else -> error("${spec.name}: output dtype ${tensor.dtype()} is not handled by the demo")
    }

    // The EValues of the last inputs: the benchmark runs the same inputs again and again.
    private var lastInputs: List<TensorData>? = null
    private var lastValues: Array<EValue> = emptyArray()

    override fun run(inputs: List<TensorData>): List<TensorData> {
        if (lastInputs !== inputs) {
            lastValues = inputs.map { EValue.from(toTensor(it)) }.toTypedArray()
            lastInputs = inputs
        }
        val values = lastValues
        val outputs = module.execute(entry.method, *values)
        return entry.outputs.mapIndexed { i, spec -> fromTensor(outputs[i].toTensor(), spec) }
    }

    override fun close() {
        module.destroy()
    }
}
