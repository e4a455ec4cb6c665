import SwiftUI

@main
struct EdgekitDemoApp: App {
    init() {
        // Benchmark mode (edgekit bench --device ios:UDID): measure, write the record, exit.
        if let options = BenchOptions.parse(ProcessInfo.processInfo.arguments) {
            Task.detached(priority: .userInitiated) {
                do {
                    _ = try await BenchmarkMode.run(options)
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
