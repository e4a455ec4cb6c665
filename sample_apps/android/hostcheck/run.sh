#!/bin/sh
# Compile the app's pure-Kotlin sources (no android.* imports) with HostCheck.kt for a desktop JVM
# and run one HostCheck command. Needs kotlinc and Android's org.json on a plain JVM (Debian:
# apt-get install libandroid-json-java). Usage: hostcheck/run.sh info path/to/models.json
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../app/src/main/java/dev/edgekit/demo"
json=${ANDROID_JSON_JAR:-/usr/share/java/com.android.json.jar}
out=${HOSTCHECK_BUILD:-"$here/build"}
mkdir -p "$out"
if [ ! -f "$out/hostcheck.jar" ] || [ -n "$(find "$src" "$here/HostCheck.kt" -newer "$out/hostcheck.jar" -name '*.kt')" ]; then
  kotlinc -cp "$json" -d "$out/hostcheck.jar" \
    "$src/ModelInfo.kt" "$src/Tensors.kt" "$src/Preprocess.kt" "$src/Postprocess.kt" \
    "$src/BenchmarkReport.kt" "$src/Benchmark.kt" "$src/ModelRunner.kt" "$here/HostCheck.kt" 2>&1 | grep -v '^warning' >&2 || true
fi
exec kotlin -cp "$out/hostcheck.jar:$json" dev.edgekit.demo.HostCheckKt "$@"
