package dev.edgekit.demo

// The measuring loop shared by the benchmark mode and the in-app "Benchmark" button. Pure Kotlin.

data class Measurement(val runner: ModelRunner, val loadMs: Double, val firstMs: Double, val stats: TimingStats, val memory: MemoryFacts)

object Benchmark {
    private fun ms(start: Long) = (System.nanoTime() - start) / 1e6

    /**
     * Load (timed), one first run (timed apart: it pays for lazy allocation), [warmup] untimed runs,
     * then [runs] runs timed one by one. Memory: resident set before loading, after, and the peak.
     */
    fun measure(
        open: () -> ModelRunner, inputs: List<TensorData>, warmup: Int, runs: Int,
        rssBytes: () -> Long?, peakRssBytes: () -> Long?,
    ): Measurement {
        require(runs >= 1) { "runs must be at least 1" }
        val baseline = rssBytes()
        var start = System.nanoTime()
        val runner = open()
        val loadMs = ms(start)
        val loaded = rssBytes()
        start = System.nanoTime()
        runner.run(inputs)
        val firstMs = ms(start)
        repeat(warmup) { runner.run(inputs) }
        val samples = DoubleArray(runs)
        for (i in 0 until runs) {
            start = System.nanoTime()
            runner.run(inputs)
            samples[i] = ms(start)
        }
        val memory = MemoryFacts(
            peakRssBytes = peakRssBytes(),
            baselineRssBytes = baseline,
            modelRssBytes = if (baseline != null && loaded != null) loaded - baseline else null,
        )
        return Measurement(runner, loadMs, firstMs, TimingStats.of(samples), memory)
    }
}
