"""The result schema shared with the sample apps: what parses, and the one line for what does not."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from edgekit.bench.schema import (
    RESULT_KIND, RUNNER_MEMORY, SCHEMA_VERSION, dump_results, empty_record, load_results, parse_result,
)
from edgekit.errors import DataError

FIXTURES = Path(__file__).with_name("fixtures")


def ok_record() -> dict:
    return json.loads((FIXTURES / "android_app_result.json").read_text())


def test_the_sample_app_records_parse_and_keep_their_numbers():
    for name in ("android_app_result.json", "ios_app_result.json"):
        record = parse_result(json.loads((FIXTURES / name).read_text()))
        assert record["schema_version"] == SCHEMA_VERSION == "1.0"
        assert record["kind"] == RESULT_KIND == "edgekit.bench.result"
        assert record["settings"]["runner"] in ("android-app", "ios-app")
        assert record["timings_ms"]["p50"] > 0 and record["timings_ms"]["count"] == 50
    assert parse_result(ok_record())["memory"]["arena_bytes"] == 26880


def test_optional_keys_are_filled_with_none_and_extra_keys_kept():
    record = ok_record()
    del record["device"]["cores"], record["memory"], record["compute"], record["throughput_ips"]
    record["samples_ms"] = [0.7, 0.71]
    parsed = parse_result(record)
    assert parsed["device"]["cores"] is None
    # the runner names its memory definition even when it measured none
    assert parsed["memory"] == {"peak_rss_bytes": None, "baseline_rss_bytes": None, "model_rss_bytes": None, "arena_bytes": None,
                                "definition": RUNNER_MEMORY[record["settings"]["runner"]]}
    assert parsed["compute"]["peak_share"] is None and parsed["throughput_ips"] is None
    assert parsed["samples_ms"] == [0.7, 0.71]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["timings_ms"].pop("mean"), "missing key 'timings_ms.mean'"),
        (lambda r: r["artifact"].pop("size_bytes"), "missing key 'artifact.size_bytes'"),
        (lambda r: r.pop("settings"), "missing key 'settings'"),
        (lambda r: r["timings_ms"].update(count="50"), "'timings_ms.count' must be a int, got str"),
        (lambda r: r["artifact"].update(size_bytes=True), "'artifact.size_bytes' must be a int, got bool"),
        (lambda r: r.update(status="fine"), "key 'status' must be one of ok, error, timeout"),
        (lambda r: r.update(kind="other"), "key 'kind' must be 'edgekit.bench.result'"),
        (lambda r: r.update(schema_version="2.0"), "schema_version '2.0' is not readable by this edgekit"),
        (lambda r: r["device"].update(kind="My Watch"), "'device.kind' must be a lower-case name such as 'ssh'"),
        (lambda r: r["settings"].update(runner=""), "'settings.runner' must be a lower-case name"),
        (lambda r: r["memory"].update(definition="rss-ish"), "'memory.definition' must be one of model-share, load-delta"),
        (lambda r: r.update(status="timeout", error=None), "status 'timeout' needs an 'error' line"),
    ],
)
def test_a_bad_record_names_the_key(mutate, message):
    record = ok_record()
    mutate(record)
    with pytest.raises(DataError) as err:
        parse_result(record)
    assert message in str(err.value)


def test_a_failed_record_may_leave_timings_and_runtime_null():
    record = ok_record()
    record.update(status="unreachable", error="adb:X: gone", timings_ms=None, runtime=None)
    parsed = parse_result(record)
    assert parsed["timings_ms"] is None and parsed["error"] == "adb:X: gone"


def test_load_results_reads_one_record_a_list_and_the_bench_document(tmp_path):
    one, two = ok_record(), ok_record()
    two["artifact"]["name"] = "second.tflite"
    (tmp_path / "one.json").write_text(json.dumps(one))
    (tmp_path / "list.json").write_text(json.dumps([one, two]))
    path = dump_results([parse_result(one), parse_result(two)], tmp_path / "out" / "doc.json")
    assert [r["artifact"]["name"] for r in load_results(tmp_path / "one.json")] == ["MODEL"]
    assert [r["artifact"]["name"] for r in load_results(tmp_path / "list.json")] == ["MODEL", "second.tflite"]
    doc = json.loads(path.read_text())
    assert doc["kind"] == "edgekit.bench.results" and doc["schema_version"] == "1.0"
    assert [r["artifact"]["name"] for r in load_results(path)] == ["MODEL", "second.tflite"]


def test_load_results_says_which_record_is_bad(tmp_path):
    bad = copy.deepcopy(ok_record())
    del bad["environment"]
    (tmp_path / "r.json").write_text(json.dumps({"results": [ok_record(), bad]}))
    with pytest.raises(DataError, match=r"r.json record 1: bench result: missing key 'environment'"):
        load_results(tmp_path / "r.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match="not a JSON results file"):
        load_results(tmp_path / "broken.json")
    with pytest.raises(DataError, match="no such results file"):
        load_results(tmp_path / "missing.json")


def test_empty_record_is_a_valid_fault_record():
    record = empty_record(
        {"path": "/x/m.tflite", "name": "m.tflite", "target": "tflite", "precision": None, "size_bytes": 10, "sha256": None},
        {"id": "adb:X", "kind": "adb", "model": None, "os": None, "cpu": None, "cores": None},
        {"threads": 1, "warmup": 5, "runs": 50, "min_time_s": None, "inputs": "random", "runner": "benchmark_model"},
        "missing-runner", "adb:X: no benchmark_model",
    )
    assert record["status"] == "missing-runner" and record["timings_ms"] is None
    assert record["environment"]["timestamp"].endswith("Z")
