package dev.edgekit.demo

import android.app.Activity
import android.os.Bundle
import android.util.Log
import android.widget.TextView
import java.io.File
import kotlin.concurrent.thread

/**
 * Benchmark mode, for `edgekit bench --device adb:SERIAL`:
 *
 *   adb shell am start -W -n dev.edgekit.demo/.BenchmarkActivity --es model FILE --ei runs 50 \
 *       --ei warmup 5 --ei threads 4 --es delegate xnnpack --es output result.json --es device_id adb:SERIAL
 *
 * FILE is a model's "file" in assets/edgekit/models.json, or an absolute path on the phone whose
 * folder holds a models.json listing it. The record (edgekit bench schema) is written atomically to
 * getExternalFilesDir(null)/edgekit-bench/OUTPUT, i.e.
 * /sdcard/Android/data/dev.edgekit.demo/files/edgekit-bench/OUTPUT, and the activity finishes.
 */
class BenchmarkActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val status = TextView(this).apply { text = "edgekit benchmark running..." }
        setContentView(status)
        val extras = intent.extras ?: Bundle()
        val model = extras.getString(EXTRA_MODEL)
        val settings = BenchSettings(
            threads = extras.getInt(EXTRA_THREADS, 4),
            warmup = extras.getInt(EXTRA_WARMUP, 5),
            runs = extras.getInt(EXTRA_RUNS, 50),
            delegate = extras.getString(EXTRA_DELEGATE) ?: "xnnpack",
        )
        val output = extras.getString(EXTRA_OUTPUT) ?: "result.json"
        val facts = DeviceInfo.facts(extras.getString(EXTRA_DEVICE_ID) ?: "adb:unknown")
        thread(name = "edgekit-bench") {
            val path = if (model == null) null else runCatching { benchmark(model, settings, facts, output) }
                .getOrElse { Log.e(TAG, "benchmark failed", it); null }
            runOnUiThread {
                status.text = path?.let { "wrote $it" } ?: "benchmark failed: see adb logcat -s $TAG"
                finish()
            }
        }
    }

    private fun benchmark(model: String, settings: BenchSettings, facts: DeviceFacts, output: String): File {
        val onDevice = model.startsWith("/")
        val catalog = if (onDevice) {
            ModelInfoParser.parse(File(File(model).parentFile, MODEL_INFO_FILE).readText())
        } else {
            AppModels(this).catalog() ?: error("no models packaged (run edgekit package --app android)")
        }
        val entry = catalog.find(if (onDevice) File(model).name else model)
            ?: error("$model is not in $MODEL_INFO_FILE (packaged: ${catalog.models.joinToString { it.file }})")
        val record = try {
            val file = if (onDevice) File(model) else AppModels(this).file(entry)
            val idLimit = entry.text?.let { text -> AppModels(this).takeIf { !onDevice }?.vocabulary(text)?.size } ?: 100
            val inputs = randomInputs(entry, seed = 0L, idLimit = idLimit)
            val m = Benchmark.measure(
                { Runners.open(entry, file, settings.threads, settings.delegate) }, inputs, settings.warmup, settings.runs,
                DeviceInfo::rssBytes, DeviceInfo::peakRssBytes,
            )
            m.runner.use {
                BenchmarkReport.ok(entry, file.path, facts, settings.copy(delegate = it.delegate), it.runtimeName, it.runtimeVersion,
                    m.loadMs, m.firstMs, m.stats, m.memory, catalog.edgekitVersion)
            }
        } catch (e: Throwable) {
            Log.e(TAG, "benchmark of $model failed", e)
            BenchmarkReport.error(entry, model, facts, settings, "${e.javaClass.simpleName}: ${e.message}", catalog.edgekitVersion)
        }
        val folder = File(getExternalFilesDir(null) ?: filesDir, BENCH_DIR).apply { mkdirs() }
        val target = File(folder, output)
        val tmp = File(folder, ".$output.part")
        tmp.writeText(record.toString(2) + "\n")
        if (!tmp.renameTo(target)) error("cannot write ${target.path}")
        Log.i(TAG, "wrote ${target.path}")
        return target
    }

    companion object {
        const val TAG = "EdgekitBench"
        const val BENCH_DIR = "edgekit-bench"
        const val EXTRA_MODEL = "model"
        const val EXTRA_RUNS = "runs"
        const val EXTRA_WARMUP = "warmup"
        const val EXTRA_THREADS = "threads"
        const val EXTRA_DELEGATE = "delegate"
        const val EXTRA_OUTPUT = "output"
        const val EXTRA_DEVICE_ID = "device_id"
    }
}
