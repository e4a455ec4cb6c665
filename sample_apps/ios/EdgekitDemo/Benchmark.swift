import Foundation
import UIKit

// The measuring loop, the benchmark record (edgekit bench schema 1.0, kind "edgekit.bench.result")
// and the benchmark mode the runner starts:
//   xcrun devicectl device process launch --device UDID --terminate-existing dev.edgekit.demo \
//       --benchmark --model FILE --runs 50 --warmup 5 --compute-units all --output result.json --device-id ios:UDID
// The record is written atomically to the app's Documents/edgekit-bench/OUTPUT, then the app exits.

struct TimingStats {
    let mean, std, min, p50, p90, p99, max: Double
    let count: Int

    /// Population std (ddof 0) and linearly interpolated percentiles, as numpy computes them.
    static func of(_ samples: [Double]) -> TimingStats {
        let sorted = samples.sorted()
        let mean = sorted.reduce(0, +) / Double(sorted.count)
        let variance = sorted.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(sorted.count)
        func percentile(_ q: Double) -> Double {
            let rank = q / 100 * Double(sorted.count - 1)
            let lo = Int(rank.rounded(.down)), hi = Int(rank.rounded(.up))
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - Double(lo))
        }
        return TimingStats(mean: mean, std: variance.squareRoot(), min: sorted.first!, p50: percentile(50),
                           p90: percentile(90), p99: percentile(99), max: sorted.last!, count: sorted.count)
    }
}

enum Memory {
    /// (resident bytes now, peak resident bytes) of this process, from task_vm_info.
    static func resident() -> (Int?, Int?) {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
        let result = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
            }
        }
        guard result == KERN_SUCCESS else { return (nil, nil) }
        return (Int(info.resident_size), Int(info.resident_size_peak))
    }
}

struct Measurement {
    let runner: ModelRunner
    let loadMs, firstMs: Double
    let stats: TimingStats
    let peakRss, baselineRss, modelRss: Int?
}

enum Benchmark {
    static func ms(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
    }

    /// Load (timed), one first run (timed apart), `warmup` untimed runs, then `runs` timed runs.
    static func measure(open: () async throws -> ModelRunner, inputs: [TensorData], warmup: Int, runs: Int) async throws -> Measurement {
        let baseline = Memory.resident().0
        var start = DispatchTime.now()
        let runner = try await open()
        let loadMs = ms(since: start)
        let loaded = Memory.resident().0
        let prepared = try runner.prepare(inputs)
        start = DispatchTime.now()
        _ = try await runner.run(prepared)
        let firstMs = ms(since: start)
        for _ in 0..<warmup { _ = try await runner.run(prepared) }
        var samples = [Double]()
        for _ in 0..<max(runs, 1) {
            start = DispatchTime.now()
            _ = try await runner.run(prepared)
            samples.append(ms(since: start))
        }
        let model = baseline.flatMap { b in loaded.map { $0 - b } }
        return Measurement(runner: runner, loadMs: loadMs, firstMs: firstMs, stats: .of(samples),
                           peakRss: Memory.resident().1, baselineRss: baseline, modelRss: model)
    }
}

struct BenchOptions {
    var model: String?
    var runs = 50
    var warmup = 5
    var threads = 1
    var computeUnits = "all"
    var output = "result.json"
    var deviceId = "ios:unknown"

    /// `--benchmark` and its options from the launch arguments, or nil for a normal launch.
    static func parse(_ arguments: [String]) -> BenchOptions? {
        guard arguments.contains("--benchmark") else { return nil }
        var options = BenchOptions()
        func value(_ flag: String) -> String? {
            guard let i = arguments.firstIndex(of: flag), i + 1 < arguments.count else { return nil }
            return arguments[i + 1]
        }
        options.model = value("--model")
        options.runs = value("--runs").flatMap(Int.init) ?? options.runs
        options.warmup = value("--warmup").flatMap(Int.init) ?? options.warmup
        options.threads = value("--threads").flatMap(Int.init) ?? options.threads
        options.computeUnits = value("--compute-units") ?? options.computeUnits
        options.output = value("--output") ?? options.output
        options.deviceId = value("--device-id") ?? options.deviceId
        return options
    }
}

enum BenchmarkReport {
    static let schemaVersion = "1.0"
    static let kind = "edgekit.bench.result"
    static let runner = "ios-app"

    static func timestamp(_ date: Date = Date()) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    static func device(_ id: String) -> [String: Any] {
        var system = utsname()
        uname(&system)
        let machine = withUnsafeBytes(of: &system.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return ["id": id, "kind": "ios", "model": machine, "os": "iOS \(UIDevice.current.systemVersion)",
                "cpu": machine, "cores": ProcessInfo.processInfo.activeProcessorCount]
    }

    /// The state the numbers were taken under: thermal state and Low Power Mode (iOS exposes no CPU
    /// governor or frequency to apps), the OS build. edgekit adds runtime and delegate.
    static func deviceState() -> [String: Any] {
        let thermal: String
        switch ProcessInfo.processInfo.thermalState {
        case .nominal: thermal = "nominal"
        case .fair: thermal = "fair"
        case .serious: thermal = "serious"
        case .critical: thermal = "critical"
        @unknown default: thermal = "unknown"
        }
        return ["thermal_state": thermal, "low_power_mode": ProcessInfo.processInfo.isLowPowerModeEnabled,
                "os_build": ProcessInfo.processInfo.operatingSystemVersionString]
    }

    private static func base(_ entry: ModelEntry, path: String, options: BenchOptions, edgekitVersion: String) -> [String: Any] {
        [
            "schema_version": schemaVersion,
            "kind": kind,
            "artifact": ["path": path, "name": entry.name, "target": entry.target,
                         "precision": entry.precision ?? NSNull(), "size_bytes": entry.sizeBytes,
                         "sha256": entry.sha256 ?? NSNull()],
            "device": device(options.deviceId),
            "device_state": deviceState(),
            "settings": ["threads": options.threads, "warmup": options.warmup, "runs": options.runs,
                         "min_time_s": NSNull(), "inputs": "random", "runner": runner],
            "parity": entry.parity ?? NSNull(),
            "environment": ["edgekit": edgekitVersion, "python": NSNull(), "hostname": NSNull(),
                            "timestamp": timestamp()],
        ]
    }

    static func ok(_ entry: ModelEntry, path: String, options: BenchOptions, m: Measurement, edgekitVersion: String) -> [String: Any] {
        var record = base(entry, path: path, options: options, edgekitVersion: edgekitVersion)
        let seconds = m.stats.mean / 1000
        record["runtime"] = ["name": m.runner.runtimeName, "version": m.runner.runtimeVersion ?? NSNull(),
                             "delegate": m.runner.delegate]
        record["timings_ms"] = ["load": m.loadMs, "first": m.firstMs, "mean": m.stats.mean, "std": m.stats.std,
                                "min": m.stats.min, "p50": m.stats.p50, "p90": m.stats.p90, "p99": m.stats.p99,
                                "max": m.stats.max, "count": m.stats.count]
        record["throughput_ips"] = seconds > 0 ? (1 / seconds) as Any : NSNull()
        record["memory"] = ["peak_rss_bytes": m.peakRss ?? NSNull(), "baseline_rss_bytes": m.baselineRss ?? NSNull(),
                            "model_rss_bytes": m.modelRss ?? NSNull(), "arena_bytes": NSNull()]
        record["compute"] = ["flops": entry.flops ?? NSNull(),
                             "gflops_per_s": entry.flops.map { (Double($0) / seconds / 1e9) as Any } ?? NSNull(),
                             "peak_gflops": NSNull(), "peak_share": NSNull()]
        record["status"] = "ok"
        record["error"] = NSNull()
        return record
    }

    static func error(_ entry: ModelEntry, path: String, options: BenchOptions, message: String, edgekitVersion: String) -> [String: Any] {
        var record = base(entry, path: path, options: options, edgekitVersion: edgekitVersion)
        record["runtime"] = NSNull()
        record["timings_ms"] = NSNull()
        record["throughput_ips"] = NSNull()
        record["memory"] = ["peak_rss_bytes": NSNull(), "baseline_rss_bytes": NSNull(), "model_rss_bytes": NSNull(),
                            "arena_bytes": NSNull()]
        record["compute"] = ["flops": entry.flops ?? NSNull(), "gflops_per_s": NSNull(), "peak_gflops": NSNull(),
                             "peak_share": NSNull()]
        record["status"] = "error"
        record["error"] = message
        return record
    }
}

enum BenchmarkMode {
    static let folder = "edgekit-bench"

    /// Run the benchmark the launch arguments ask for and write the record; returns its path.
    static func run(_ options: BenchOptions) async throws -> URL {
        guard let catalog = try ModelCatalog.bundled() else { throw AppError("no models packaged (edgekit package --app ios)") }
        guard let name = options.model, let entry = catalog.find(name) else {
            throw AppError("--model \(options.model ?? "(missing)") is not in \(ModelFiles.infoFile)")
        }
        let record: [String: Any]
        do {
            guard let url = ModelCatalog.fileURL(entry.file) else { throw AppError("\(entry.file) is not in the app bundle") }
            let inputs = try randomInputs(entry)
            let m = try await Benchmark.measure(
                open: { try await Runners.open(entry, url: url, computeUnits: options.computeUnits, threads: options.threads) },
                inputs: inputs, warmup: options.warmup, runs: options.runs)
            record = BenchmarkReport.ok(entry, path: url.path, options: options, m: m, edgekitVersion: catalog.edgekitVersion)
        } catch {
            record = BenchmarkReport.error(entry, path: entry.file, options: options, message: error.localizedDescription,
                                           edgekitVersion: catalog.edgekitVersion)
        }
        let documents = try FileManager.default.url(for: .documentDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        let folderURL = documents.appendingPathComponent(folder, isDirectory: true)
        try FileManager.default.createDirectory(at: folderURL, withIntermediateDirectories: true)
        let target = folderURL.appendingPathComponent(options.output)
        let data = try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: target, options: .atomic)
        print("EdgekitBench: wrote \(target.path)")
        return target
    }
}
