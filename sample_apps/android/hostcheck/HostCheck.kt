package dev.edgekit.demo

import java.io.File

// Runs the app's pure-Kotlin code (model info, pre/post-processing, benchmark record) on a desktop
// JVM, without Android: see hostcheck/run.sh. Commands:
//   info MODELS_JSON                 parse models.json, print each model's task and input shapes
//   image MODELS_JSON FILE           preprocess a synthetic gradient image for FILE, print the values
//   tokens VOCAB MAX_LEN TEXT        WordPiece ids of TEXT
//   record MODELS_JSON FILE          the benchmark record BenchmarkReport writes for FILE, from the
//                                    timing samples given on stdin (one number of ms per line)
//   text MODELS_JSON FILE VOCAB TEXT the inputs the text demo gives FILE for TEXT (first 8 values each)
//   state MODELS_JSON FILE           the first three values of each input the demo feeds FILE at
//                                    step 0 and step 1, given outputs 0.00, 0.01, ... at step 0
fun main(args: Array<String>) {
    when (args.getOrNull(0)) {
        "info" -> {
            val catalog = ModelInfoParser.parse(File(args[1]).readText())
            for (m in catalog.models) {
                println("${m.file} ${m.runtime} ${m.task} " + m.inputs.joinToString(" ") { "${it.name}:${it.shape.joinToString("x")}:${it.dtype}:${it.role}" })
            }
        }
        "image" -> {
            val entry = ModelInfoParser.parse(File(args[1]).readText()).find(args[2]) ?: error("no ${args[2]}")
            val image = entry.image ?: error("${args[2]} has no image input")
            val pixels = syntheticPixels(image.width, image.height)
            val tensor = ImagePreprocessor.toInput(pixels, image, entry.inputs[image.input])
            val values = tensor.bytes?.map { it.toInt() }?.joinToString(" ") ?: tensor.toReal().joinToString(" ")
            println(values)
        }
        "tokens" -> {
            val vocab = File(args[1]).readLines()
            val encoding = WordPieceTokenizer(vocab, true, SpecialTokens("[CLS]", "[SEP]", "[PAD]", "[UNK]"))
                .encode(args.drop(3).joinToString(" "), args[2].toInt())
            println(encoding.ids.joinToString(" "))
        }
        "record" -> {
            val catalog = ModelInfoParser.parse(File(args[1]).readText())
            val entry = catalog.find(args[2]) ?: error("no ${args[2]}")
            val samples = generateSequence(::readLine).filter { it.isNotBlank() }.map { it.trim().toDouble() }.toList().toDoubleArray()
            val facts = DeviceFacts("adb:R5CT1234567", "samsung SM-S911B", "Android 14 (API 34)", "SM8550", 8)
            val record = BenchmarkReport.ok(
                entry, "/data/user/0/dev.edgekit.demo/files/edgekit/${entry.file}", facts,
                BenchSettings(threads = 4, warmup = 5, runs = samples.size, delegate = "xnnpack"),
                "litert", "2.16.1 (litert 1.4.0)", loadMs = 12.5, firstMs = samples.first() * 3,
                stats = TimingStats.of(samples),
                memory = MemoryFacts(peakRssBytes = 187_318_272, baselineRssBytes = 171_966_464, modelRssBytes = 6_512_640),
                edgekitVersion = catalog.edgekitVersion, time = "2025-01-01T00:00:00Z",
            )
            println(record.toString(2))
        }
        "text" -> {
            val entry = ModelInfoParser.parse(File(args[1]).readText()).find(args[2]) ?: error("no ${args[2]}")
            val info = entry.text ?: error("${args[2]} has no text block")
            val encoding = WordPieceTokenizer(File(args[3]).readLines(), info.lowercase, info.specialTokens)
                .encode(args.drop(4).joinToString(" "), info.maxLength)
            for (t in textInputs(entry, encoding)) {
                println("${t.info.name} ${t.info.role} " + t.toReal().take(8).joinToString(" ") { it.toLong().toString() })
            }
        }
        "state" -> {
            val entry = ModelInfoParser.parse(File(args[1]).readText()).find(args[2]) ?: error("no ${args[2]}")
            val fresh = randomInputs(entry)
            val outputs = entry.outputs.map { info -> TensorData.fromReal(info, FloatArray(info.elementCount) { it * 0.01f }) }
            for ((step, previous) in listOf(null, outputs).withIndex()) {
                val fed = feedState(fresh, previous, entry.state)
                println("step $step " + fed.joinToString(" ") { t ->
                    t.info.name + "=" + t.toReal().take(3).joinToString(",") { "%.2f".format(it) }
                })
            }
        }
        else -> error("usage: info | image | tokens | record | text | state (see HostCheck.kt)")
    }
}

/** A reproducible test image: red rises left to right, green top to bottom, blue is constant. */
fun syntheticPixels(width: Int, height: Int): IntArray = IntArray(width * height) { i ->
    val x = i % width
    val y = i / width
    val r = if (width > 1) x * 255 / (width - 1) else 0
    val g = if (height > 1) y * 255 / (height - 1) else 0
    (0xff shl 24) or (r shl 16) or (g shl 8) or 64
}
