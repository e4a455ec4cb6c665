package dev.edgekit.demo

/** One loaded artifact. Inputs and outputs are in the order of models.json (the manifest's order). */
interface ModelRunner : AutoCloseable {
    val runtimeName: String
    val runtimeVersion: String?
    val delegate: String
    fun run(inputs: List<TensorData>): List<TensorData>
}
