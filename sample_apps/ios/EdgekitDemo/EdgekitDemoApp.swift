import SwiftUI

@main
struct EdgekitDemoApp: App {
    init() {
        // Benchmark mode (edgekit bench --device ios:UDID): measure, write the record, exit.
        if let options = BenchOptions.parse(ProcessInfo.processInfo.arguments) {
            DispatchQueue.global(qos: .userInitiated).async {
                do {
                    _ = try BenchmarkMode.run(options)
                    exit(0)
                } catch {
                    print("EdgekitBench: error: \(error.localizedDescription)")
                    exit(1)
                }
            }
        }
    }

    var body: some Scene {
        WindowGroup {
            ContentView()
        }
    }
}
