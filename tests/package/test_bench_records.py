"""The benchmark records the apps write parse with edgekit's own result parser, and the fixtures
hold exactly the keys the Kotlin and Swift sources write (see fixtures/README.md: constructed from
the app source, not captured from a device)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgekit.bench import schema
from edgekit.errors import DataError
from tests.package.conftest import REPO

FIXTURES = Path(__file__).parent / "fixtures"
KOTLIN_REPORT = REPO / "sample_apps/android/app/src/main/java/dev/edgekit/demo/BenchmarkReport.kt"
SWIFT_REPORT = REPO / "sample_apps/ios/EdgekitDemo/Benchmark.swift"


def record_keys(record: dict) -> set[str]:
    """Top-level keys and section.key pairs (parity is copied from the manifest, so not counted)."""
    out = set()
    for key, value in record.items():
        out.add(key)
        if isinstance(value, dict) and key != "parity":
            out.update(f"{key}.{k}" for k in value)
    return out


def schema_keys(record: dict | None = None) -> set[str]:
    required = {"schema_version", "kind", "status", "error", "throughput_ips", "parity"}
    # the device-state section's keys depend on what a platform exposes (docs/bench.md)
    free = {f"{s}.{k}" for s in schema.FREEFORM_SECTIONS for k in (record or {}).get(s) or {}}
    return required | set(schema._SECTIONS) | {f"{s}.{k}" for s, keys in schema._SECTIONS.items() for k in keys} | set(
        schema.FREEFORM_SECTIONS) | free


def required_keys() -> set[str]:
    return {"schema_version", "kind", "status", "error", "throughput_ips"} | set(schema._SECTIONS) | {
        f"{s}.{k}" for s, keys in schema._SECTIONS.items() for k, (required, _) in keys.items() if required}


@pytest.mark.parametrize("name,runner,kind", [("android_bench_result.json", "android-app", "adb"),
                                              ("ios_bench_result.json", "ios-app", "ios")])
def test_app_records_parse_with_edgekits_parser(name, runner, kind):
    raw = json.loads((FIXTURES / name).read_text())
    record = schema.parse_result(raw)
    assert record["status"] == "ok" and record["error"] is None
    assert record["settings"]["runner"] == runner and record["device"]["kind"] == kind
    assert record["device"]["id"].startswith(f"{kind}:")
    t = record["timings_ms"]
    assert t["min"] <= t["p50"] <= t["p90"] <= t["p99"] <= t["max"] and t["count"] == record["settings"]["runs"]
    assert record["throughput_ips"] == pytest.approx(1000 / t["mean"])
    assert record["compute"]["gflops_per_s"] == pytest.approx(record["compute"]["flops"] / (t["mean"] / 1000) / 1e9)
    # the apps write every key of the schema (none left for the parser to fill) and nothing else
    assert required_keys() <= record_keys(raw) <= schema_keys(raw)
    assert schema.load_results(FIXTURES / name)[0] == record


def test_android_fixture_keys_are_the_kotlin_sources_keys():
    source = KOTLIN_REPORT.read_text()
    written = set(re.findall(r'\.put\("([a-z0-9_]+)"', source))
    fixture = json.loads((FIXTURES / "android_bench_result.json").read_text())
    leaf_keys = {k.split(".")[-1] for k in record_keys(fixture)}
    assert leaf_keys == written
    assert re.search(r'const val BENCH_RUNNER = "([^"]+)"', source).group(1) == "android-app"
    assert re.search(r'const val BENCH_SCHEMA_VERSION = "([^"]+)"', source).group(1) == schema.SCHEMA_VERSION
    assert re.search(r'const val BENCH_RESULT_KIND = "([^"]+)"', source).group(1) == schema.RESULT_KIND


def test_ios_fixture_keys_are_the_swift_sources_keys():
    source = SWIFT_REPORT.read_text()
    report = source[source.index("enum BenchmarkReport"):source.index("enum BenchmarkMode")]
    written = set(re.findall(r'"([a-z0-9_]+)"\s*[:\]]', report)) - {"ok", "error"} | {"error"}
    fixture = json.loads((FIXTURES / "ios_bench_result.json").read_text())
    leaf_keys = {k.split(".")[-1] for k in record_keys(fixture)}
    assert leaf_keys == written
    assert 'static let runner = "ios-app"' in source
    assert f'static let schemaVersion = "{schema.SCHEMA_VERSION}"' in source
    assert f'static let kind = "{schema.RESULT_KIND}"' in source


def test_an_app_error_record_parses_and_a_broken_one_is_named():
    record = json.loads((FIXTURES / "android_bench_result.json").read_text())
    # what BenchmarkReport.error writes when the model does not load
    failed = dict(record, runtime=None, timings_ms=None, throughput_ips=None, status="error",
                  error="IllegalArgumentException: Internal error: Failed to apply delegate")
    assert schema.parse_result(failed)["status"] == "error"
    record["timings_ms"]["mean"] = "5.1 ms"
    with pytest.raises(DataError, match=r"'timings_ms.mean' must be a number"):
        schema.parse_result(record)
