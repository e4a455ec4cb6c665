package dev.edgekit.demo

import org.json.JSONObject
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone
import kotlin.math.ceil
import kotlin.math.floor
import kotlin.math.sqrt

// The benchmark result record, in the schema of `edgekit bench` (edgekit/bench/schema.py,
// SCHEMA_VERSION 1.0, kind "edgekit.bench.result"). Pure Kotlin + org.json, no android.*.

const val BENCH_SCHEMA_VERSION = "1.0"
const val BENCH_RESULT_KIND = "edgekit.bench.result"
const val BENCH_RUNNER = "android-app"

data class TimingStats(
    val mean: Double, val std: Double, val min: Double, val p50: Double,
    val p90: Double, val p99: Double, val max: Double, val count: Int,
) {
    companion object {
        /** Population std (ddof 0) and linearly interpolated percentiles, as numpy computes them. */
        fun of(samplesMs: DoubleArray): TimingStats {
            require(samplesMs.isNotEmpty()) { "no timed runs" }
            val sorted = samplesMs.sortedArray()
            val mean = sorted.average()
            val variance = sorted.fold(0.0) { acc, x -> acc + (x - mean) * (x - mean) } / sorted.size
            return TimingStats(
                mean, sqrt(variance), sorted.first(), percentile(sorted, 50.0),
                percentile(sorted, 90.0), percentile(sorted, 99.0), sorted.last(), sorted.size,
            )
        }

        fun percentile(sorted: DoubleArray, q: Double): Double {
            val rank = q / 100.0 * (sorted.size - 1)
            val lo = floor(rank).toInt()
            val hi = ceil(rank).toInt()
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo)
        }
    }
}

data class DeviceFacts(val id: String, val model: String?, val os: String?, val cpu: String?, val cores: Int?)

data class BenchSettings(val threads: Int, val warmup: Int, val runs: Int, val delegate: String)

data class MemoryFacts(val peakRssBytes: Long?, val baselineRssBytes: Long?, val modelRssBytes: Long?)

object BenchmarkReport {
    private fun orNull(value: Any?): Any = value ?: JSONObject.NULL

    fun timestamp(now: Date = Date()): String {
        val format = SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'Z'", Locale.US)
        format.timeZone = TimeZone.getTimeZone("UTC")
        return format.format(now)
    }

    private fun artifact(entry: ModelEntry, path: String) = JSONObject()
        .put("path", path)
        .put("name", entry.name)
        .put("target", entry.target)
        .put("precision", orNull(entry.precision))
        .put("size_bytes", entry.sizeBytes)
        .put("sha256", orNull(entry.sha256))

    private fun device(facts: DeviceFacts) = JSONObject()
        .put("id", facts.id)
        .put("kind", "adb")
        .put("model", orNull(facts.model))
        .put("os", orNull(facts.os))
        .put("cpu", orNull(facts.cpu))
        .put("cores", orNull(facts.cores))

    private fun settings(s: BenchSettings) = JSONObject()
        .put("threads", s.threads)
        .put("warmup", s.warmup)
        .put("runs", s.runs)
        .put("min_time_s", JSONObject.NULL)
        .put("inputs", "random")
        .put("runner", BENCH_RUNNER)

    private fun environment(edgekitVersion: String, facts: DeviceFacts, time: String) = JSONObject()
        .put("edgekit", edgekitVersion)
        .put("python", JSONObject.NULL)
        .put("hostname", orNull(facts.model))
        .put("timestamp", time)

    private fun memory(m: MemoryFacts?) = JSONObject()
        .put("peak_rss_bytes", orNull(m?.peakRssBytes))
        .put("baseline_rss_bytes", orNull(m?.baselineRssBytes))
        .put("model_rss_bytes", orNull(m?.modelRssBytes))
        .put("arena_bytes", JSONObject.NULL)

    private fun base(entry: ModelEntry, path: String, facts: DeviceFacts, s: BenchSettings,
                     edgekitVersion: String, time: String) = JSONObject()
        .put("schema_version", BENCH_SCHEMA_VERSION)
        .put("kind", BENCH_RESULT_KIND)
        .put("artifact", artifact(entry, path))
        .put("device", device(facts))
        .put("settings", settings(s))
        .put("parity", orNull(entry.parity))
        .put("environment", environment(edgekitVersion, facts, time))

    /** A measured run: status "ok". */
    fun ok(
        entry: ModelEntry, path: String, facts: DeviceFacts, s: BenchSettings,
        runtimeName: String, runtimeVersion: String?, loadMs: Double, firstMs: Double, stats: TimingStats,
        memory: MemoryFacts, edgekitVersion: String, time: String = timestamp(),
    ): JSONObject {
        val flops = entry.flops
        val seconds = stats.mean / 1000.0
        return base(entry, path, facts, s, edgekitVersion, time)
            .put("runtime", JSONObject().put("name", runtimeName).put("version", orNull(runtimeVersion)).put("delegate", s.delegate))
            .put("timings_ms", JSONObject()
                .put("load", loadMs).put("first", firstMs)
                .put("mean", stats.mean).put("std", stats.std).put("min", stats.min)
                .put("p50", stats.p50).put("p90", stats.p90).put("p99", stats.p99).put("max", stats.max)
                .put("count", stats.count))
            .put("throughput_ips", if (seconds > 0) 1.0 / seconds else JSONObject.NULL)
            .put("memory", memory(memory))
            .put("compute", JSONObject()
                .put("flops", orNull(flops))
                .put("gflops_per_s", if (flops != null && seconds > 0) flops / seconds / 1e9 else JSONObject.NULL)
                .put("peak_gflops", JSONObject.NULL)
                .put("peak_share", JSONObject.NULL))
            .put("status", "ok")
            .put("error", JSONObject.NULL)
    }

    /** Nothing measured (the model did not load or run): status "error" and the one line why. */
    fun error(
        entry: ModelEntry, path: String, facts: DeviceFacts, s: BenchSettings,
        message: String, edgekitVersion: String, time: String = timestamp(),
    ): JSONObject = base(entry, path, facts, s, edgekitVersion, time)
        .put("runtime", JSONObject.NULL)
        .put("timings_ms", JSONObject.NULL)
        .put("throughput_ips", JSONObject.NULL)
        .put("memory", memory(null))
        .put("compute", JSONObject().put("flops", orNull(entry.flops)).put("gflops_per_s", JSONObject.NULL)
            .put("peak_gflops", JSONObject.NULL).put("peak_share", JSONObject.NULL))
        .put("status", "error")
        .put("error", message)
}
