"""The one builder of each sample app's benchmark launch: `edgekit bench` runs it, `edgekit package`
prints it (with the build and install steps, below). Both read their argument names from here, so
the two can never drift apart.

Android: BenchmarkActivity's intent extras (sample_apps/android/.../BenchmarkActivity.kt).
iOS: the launch arguments Benchmark.swift's BenchOptions.parse reads (sample_apps/ios/EdgekitDemo).
"""
from __future__ import annotations

import shlex

ANDROID_PACKAGE = "dev.edgekit.demo"
ANDROID_ACTIVITY = ".BenchmarkActivity"
IOS_BUNDLE_ID = "dev.edgekit.demo"
ANDROID_FILES = f"/sdcard/Android/data/{{package}}/files"
IOS_RESULTS_DIR = "Documents/edgekit-bench"  # inside the iOS app's data container


def android_component(app: str | None = None) -> str:
    """PACKAGE/ACTIVITY of the benchmark activity; --app may give the package or the whole component."""
    component = app or f"{ANDROID_PACKAGE}/{ANDROID_ACTIVITY}"
    return component if "/" in component else f"{component}/{ANDROID_ACTIVITY}"


def android_results_dir(package: str = ANDROID_PACKAGE) -> str:
    return ANDROID_FILES.format(package=package) + "/edgekit-bench"


def android_models_dir(package: str = ANDROID_PACKAGE) -> str:
    return ANDROID_FILES.format(package=package) + "/edgekit-models"


def android_start_argv(model: str, output: str, device_id: str, *, runs: int, warmup: int, threads: int,
                       component: str | None = None, delegate: str | None = None) -> list[str]:
    """`am start` on the phone: -W waits for the launch, -S stops a previous instance first."""
    argv = ["am", "start", "-W", "-S", "-n", android_component(component), "--es", "model", model,
            "--ei", "runs", str(runs), "--ei", "warmup", str(warmup), "--ei", "threads", str(threads)]
    if delegate:
        argv += ["--es", "delegate", delegate]
    return argv + ["--es", "output", output, "--es", "device_id", device_id]


def ios_app_arguments(model: str, output: str, device_id: str, *, runs: int, warmup: int, threads: int,
                      compute_units: str | None = None) -> list[str]:
    """The iOS app's launch arguments for its benchmark mode."""
    argv = ["--benchmark", "--model", model, "--runs", str(runs), "--warmup", str(warmup), "--threads", str(threads)]
    if compute_units:
        argv += ["--compute-units", compute_units]
    return argv + ["--output", output, "--device-id", device_id]


def ios_launch_argv(udid: str, bundle_id: str, app_arguments: list[str]) -> list[str]:
    """`xcrun devicectl` arguments that launch the app (returns once launched, Xcode 15 and 16 alike)."""
    return ["device", "process", "launch", "--device", udid, "--terminate-existing", bundle_id, *app_arguments]


# --- what `edgekit package` prints ---------------------------------------------------------------


#: the Gradle the wrapper pins (sample_apps/android/gradle/wrapper/gradle-wrapper.properties)
GRADLE_VERSION = "8.11.1"


def android_bench_command(model_file: str, runs: int = 50, warmup: int = 5, threads: int = 4,
                          delegate: str = "xnnpack", output: str = "result.json", device_id: str = "adb:SERIAL") -> str:
    """The adb line that starts the Android app's benchmark mode: the argv `edgekit bench` runs."""
    argv = android_start_argv(model_file, output, device_id, runs=runs, warmup=warmup, threads=threads,
                                     delegate=delegate)
    return "adb shell " + shlex.join(argv)


def ios_bench_command(model_file: str, runs: int = 50, warmup: int = 5, threads: int = 1, compute_units: str = "all",
                      output: str = "result.json", udid: str = "UDID") -> str:
    """The devicectl line that starts the iOS app's benchmark mode: the argv `edgekit bench` runs."""
    arguments = ios_app_arguments(model_file, output, f"ios:{udid}", runs=runs, warmup=warmup, threads=threads,
                                         compute_units=compute_units)
    return "xcrun devicectl " + shlex.join(ios_launch_argv(udid, IOS_BUNDLE_ID, arguments))


def gradle_commands(app_dir) -> list[str]:
    """How to build: ./gradlew when the wrapper's jar is there; else the one step that creates it.

    The wrapper jar is a binary that Gradle's own distribution writes; edgekit's repository carries
    gradlew, gradlew.bat and gradle-wrapper.properties, and a checkout without the jar gets it from
    an installed Gradle (any 7.x/8.x) with `gradle wrapper`, pinned to the version the app is tested with."""
    from pathlib import Path

    where = shlex.quote(str(app_dir))
    steps = []
    if not (Path(app_dir) / "gradle" / "wrapper" / "gradle-wrapper.jar").is_file():
        steps.append(f"cd {where} && gradle wrapper --gradle-version {GRADLE_VERSION}")
    steps.append(f"cd {where} && ./gradlew installDebug")
    return steps


def build_commands(app: str, app_dir, entries: list[dict]) -> list[str]:
    """What `edgekit package` prints after copying: build, install, benchmark, collect."""
    where = shlex.quote(str(app_dir))
    first = entries[0]["file"] if entries else "MODEL"
    out = f"{entries[0]['id'] if entries else 'result'}.json"
    if app == "android":
        return [
            *gradle_commands(app_dir),
            f"adb shell am start -n {ANDROID_PACKAGE}/.MainActivity",
            android_bench_command(first, output=out),
            f"adb pull {android_results_dir()}/{out}",
        ]
    needs_executorch = any(e["runtime"] == "executorch" for e in entries)
    spec = "project-executorch.yml" if needs_executorch else "project.yml"
    return [
        f"cd {where} && xcodegen generate --spec {spec}",
        f"cd {where} && xcodebuild -project EdgekitDemo.xcodeproj -scheme EdgekitDemo -configuration Release "
        "-destination generic/platform=iOS -derivedDataPath build -allowProvisioningUpdates DEVELOPMENT_TEAM=YOUR_TEAM_ID build",
        f"xcrun devicectl device install app --device UDID {where}/build/Build/Products/Release-iphoneos/EdgekitDemo.app",
        ios_bench_command(first, output=out),
        f"xcrun devicectl device copy from --device UDID --domain-type appDataContainer --domain-identifier {IOS_BUNDLE_ID} "
        f"--source {IOS_RESULTS_DIR}/{out} --destination {out}",
    ]
