package dev.edgekit.demo

import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.os.Bundle
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.EditText
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import java.util.concurrent.Executors

/**
 * The two demos, chosen by each model's "task" in models.json: image classification (bundled
 * sample images, or a camera snapshot) and text classification / embedding. Anything else runs on
 * random inputs. The UI is built in code: one screen, no layout resources.
 */
class MainActivity : AppCompatActivity() {
    private val worker = Executors.newSingleThreadExecutor()
    private lateinit var models: AppModels
    private var catalog: ModelCatalog? = null
    private var runner: ModelRunner? = null
    private var runnerKey: String? = null
    private var stateOutputs: List<TensorData>? = null // a stateful model's last outputs, fed back at the next Run
    private var stateStep = 0
    private var currentBitmap: Bitmap? = null

    private lateinit var modelPicker: Spinner
    private lateinit var delegatePicker: Spinner
    private lateinit var imageView: ImageView
    private lateinit var samplePicker: Spinner
    private lateinit var textA: EditText
    private lateinit var textB: EditText
    private lateinit var output: TextView

    private val camera = registerForActivityResult(ActivityResultContracts.TakePicturePreview()) { bitmap ->
        if (bitmap != null) showImage(bitmap)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        models = AppModels(this)
        catalog = models.catalog()
        val column = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL; setPadding(32, 32, 32, 32) }
        output = TextView(this)
        val entries = catalog?.models.orEmpty()
        if (entries.isEmpty()) {
            output.text = "No models packaged.\n\nedgekit package --app android MODEL.tflite\nthen rebuild the app."
            column.addView(output)
            setContentView(ScrollView(this).apply { addView(column) })
            return
        }
        modelPicker = Spinner(this).apply {
            adapter = ArrayAdapter(this@MainActivity, android.R.layout.simple_spinner_dropdown_item,
                entries.map { "${it.id}  (${it.runtime}, ${it.precision ?: "-"}, ${it.task})" })
        }
        delegatePicker = Spinner(this).apply {
            adapter = ArrayAdapter(this@MainActivity, android.R.layout.simple_spinner_dropdown_item, Runners.LITERT_DELEGATES)
        }
        imageView = ImageView(this).apply { adjustViewBounds = true; maxHeight = 600 }
        val samples = models.sampleImages()
        samplePicker = Spinner(this).apply {
            adapter = ArrayAdapter(this@MainActivity, android.R.layout.simple_spinner_dropdown_item, samples)
        }
        val texts = catalog!!.sampleTexts
        textA = EditText(this).apply { setText(texts.getOrElse(0) { "" }) }
        textB = EditText(this).apply { setText(texts.getOrElse(1) { "" }) }
        val cameraButton = Button(this).apply { text = "Camera"; setOnClickListener { camera.launch(null) } }
        val runButton = Button(this).apply { text = "Run"; setOnClickListener { runDemo() } }
        val benchButton = Button(this).apply { text = "Benchmark (20 runs)"; setOnClickListener { benchmark() } }
        listOf(modelPicker, delegatePicker, samplePicker, cameraButton, imageView, textA, textB, runButton, benchButton, output)
            .forEach { column.addView(it) }
        setContentView(ScrollView(this).apply { addView(column) })

        samplePicker.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) {
                assets.open(samples[position]).use { showImage(BitmapFactory.decodeStream(it)) }
            }
            override fun onNothingSelected(parent: AdapterView<*>?) {}
        }
        modelPicker.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) = showControls()
            override fun onNothingSelected(parent: AdapterView<*>?) {}
        }
        showControls()
    }

    private fun selected(): ModelEntry = catalog!!.models[modelPicker.selectedItemPosition]

    private fun showControls() {
        val entry = selected()
        val image = entry.task == "image-classification"
        val text = entry.task.startsWith("text") && entry.text?.tokenizer != null
        samplePicker.visibility = if (image) View.VISIBLE else View.GONE
        imageView.visibility = if (image) View.VISIBLE else View.GONE
        textA.visibility = if (text) View.VISIBLE else View.GONE
        textB.visibility = if (text && entry.task == "text-embedding") View.VISIBLE else View.GONE
        delegatePicker.visibility = if (entry.runtime == "litert") View.VISIBLE else View.GONE
        output.text = "${entry.file}: ${entry.task}, verified ${entry.status ?: "-"}" +
            (entry.parity?.optDouble("cosine")?.takeIf { !it.isNaN() }?.let { ", cosine %.5f".format(it) } ?: "")
    }

    private fun showImage(bitmap: Bitmap) {
        currentBitmap = bitmap
        imageView.setImageBitmap(bitmap)
    }

    /** The loaded runner for the selected model and delegate, re-opened only when they change. */
    private fun openRunner(entry: ModelEntry): ModelRunner {
        val delegate = if (entry.runtime == "litert") delegatePicker.selectedItem as String else "program"
        val key = "${entry.file}/$delegate"
        if (runnerKey != key) {
            runner?.close()
            runner = Runners.open(entry, models.file(entry), THREADS, delegate)
            runnerKey = key
            stateOutputs = null
            stateStep = 0
        }
        return runner!!
    }

    private fun inputsFor(entry: ModelEntry, text: String): Pair<List<TensorData>, LongArray?> {
        entry.image?.let { image ->
            val bitmap = currentBitmap ?: error("pick a sample image first")
            val scaled = Bitmap.createScaledBitmap(bitmap, image.width, image.height, true)
            val pixels = IntArray(image.width * image.height)
            scaled.getPixels(pixels, 0, image.width, 0, 0, image.width, image.height)
            val inputs = randomInputs(entry).toMutableList()
            inputs[image.input] = ImagePreprocessor.toInput(pixels, image, entry.inputs[image.input])
            return inputs to null
        }
        val info = entry.text
        val vocab = info?.let { models.vocabulary(it) }
        if (info != null && vocab != null) {
            val encoding = WordPieceTokenizer(vocab, info.lowercase, info.specialTokens).encode(text, info.maxLength)
            return textInputs(entry, encoding) to encoding.mask
        }
        return randomInputs(entry) to null
    }

    private fun describe(entry: ModelEntry, outputs: List<TensorData>): String = outputs.joinToString("\n\n") { out ->
        val values = out.toReal()
        when (out.info.role) {
            "logits" -> Postprocess.topK(values, entry.topK, entry.labels)
                .joinToString("\n", "${out.info.name}: top ${entry.topK}\n") { "%-24s %.3f".format(it.label, it.probability) }
            else -> "${out.info.name} ${out.info.shape.joinToString("x")}: " +
                values.take(8).joinToString(", ") { "%.4f".format(it) } + if (values.size > 8) ", ..." else ""
        }
    }

    private fun runDemo() {
        val entry = selected()
        val a = textA.text.toString()
        val b = textB.text.toString()
        worker.execute {
            val message = runCatching {
                val r = openRunner(entry)
                val (fresh, mask) = inputsFor(entry, a)
                val outputs = r.run(feedState(fresh, stateOutputs, entry.state))
                val embeddingIndex = outputs.indexOfFirst { it.info.role == "embedding" }
                if (entry.task == "text-embedding" && embeddingIndex >= 0 && entry.text?.tokenizer != null) {
                    val (inputsB, maskB) = inputsFor(entry, b)
                    val spec = entry.outputs[embeddingIndex]
                    val ea = Postprocess.embedding(outputs[embeddingIndex], spec.pooling ?: "none", mask)
                    val eb = Postprocess.embedding(r.run(inputsB)[embeddingIndex], spec.pooling ?: "none", maskB)
                    "cosine similarity: %.4f\n(%d-d embeddings, %s pooling)".format(Postprocess.cosine(ea, eb), ea.size, spec.pooling)
                } else if (entry.state.isNotEmpty()) {
                    stateOutputs = outputs
                    stateStep += 1
                    "step $stateStep (fed back: " + entry.state.joinToString { "output ${it.output} -> input ${it.input}" } +
                        "; Run again for the next step)\n\n" + describe(entry, outputs)
                } else {
                    describe(entry, outputs)
                }
            }.getOrElse { "error: ${it.message}" }
            runOnUiThread { output.text = message }
        }
    }

    private fun benchmark() {
        val entry = selected()
        val delegate = if (entry.runtime == "litert") delegatePicker.selectedItem as String else "program"
        output.text = "benchmarking ${entry.file} ..."
        worker.execute {
            val message = runCatching {
                runner?.close(); runner = null; runnerKey = null
                val m = Benchmark.measure({ Runners.open(entry, models.file(entry), THREADS, delegate) },
                    randomInputs(entry), 5, 20, DeviceInfo::rssBytes, DeviceInfo::peakRssBytes)
                m.runner.close()
                "load %.1f ms, first %.2f ms\nmean %.3f ms, p50 %.3f, p90 %.3f (20 runs, %d threads, %s)".format(
                    m.loadMs, m.firstMs, m.stats.mean, m.stats.p50, m.stats.p90, THREADS, delegate)
            }.getOrElse { "error: ${it.message}" }
            runOnUiThread { output.text = message }
        }
    }

    override fun onDestroy() {
        worker.execute { runner?.close() }
        worker.shutdown()
        super.onDestroy()
    }

    companion object {
        const val THREADS = 4
    }
}
