"""edgekit bench on this host: real .tflite artifacts, each measured in a fresh subprocess."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from edgekit.bench import run_bench
from edgekit.bench.schema import load_results
from edgekit.cli import main
from edgekit.manifest import read as read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def host_records(tflite_artifacts):
    return run_bench([tflite_artifacts["fp32"], tflite_artifacts["int8"], tflite_artifacts["bare"]],
                     threads=1, warmup=2, runs=25)


def test_every_artifact_is_measured_with_consistent_statistics(host_records, tflite_artifacts):
    assert [r["status"] for r in host_records] == ["ok", "ok", "ok"]
    assert [r["artifact"]["name"] for r in host_records] == ["small_cnn_fp32.tflite", "small_cnn_int8.tflite", "no_manifest.tflite"]
    for record, key in zip(host_records, ("fp32", "int8", "bare")):
        t = record["timings_ms"]
        assert t["count"] == 25 and len(record["samples_ms"]) == 25
        assert 0 < t["min"] <= t["p50"] <= t["p90"] <= t["p99"] <= t["max"]
        assert t["mean"] == pytest.approx(np.mean(record["samples_ms"]))
        assert t["p90"] == pytest.approx(np.percentile(record["samples_ms"], 90))
        assert t["load"] > 0 and t["first"] > 0
        assert record["throughput_ips"] == pytest.approx(1000 / t["mean"])
        assert record["artifact"]["size_bytes"] == os.path.getsize(tflite_artifacts[key])
        assert record["device"]["id"] == "host" and record["device"]["cores"] == os.cpu_count()
        assert record["runtime"]["name"] == "ai-edge-litert" and record["settings"]["runner"] == "python"


def test_memory_is_split_into_baseline_and_the_models_share(host_records):
    for record in host_records:
        m = record["memory"]
        assert m["peak_rss_bytes"] > m["baseline_rss_bytes"] > 10 * 2**20  # python + numpy + the runtime
        assert m["model_rss_bytes"] == m["peak_rss_bytes"] - m["baseline_rss_bytes"]
        assert 0 < m["model_rss_bytes"] < m["peak_rss_bytes"]


def test_compute_and_parity_come_from_the_manifest(host_records, tflite_artifacts):
    for record, key in zip(host_records[:2], ("fp32", "int8")):
        manifest = read_manifest(tflite_artifacts[key])
        c = record["compute"]
        assert c["flops"] == manifest["flops"] > 0
        assert c["gflops_per_s"] == pytest.approx(c["flops"] / (record["timings_ms"]["p50"] * 1e-3) / 1e9)
        assert c["peak_gflops"] > 0 and c["peak_share"] == pytest.approx(c["gflops_per_s"] / c["peak_gflops"])
        assert record["parity"] == manifest["parity"] and record["artifact"]["sha256"] == manifest["sha256"]
        assert record["artifact"]["precision"] == manifest["precision"]
        assert record["warnings"] == []
    bare = host_records[2]
    assert bare["parity"] is None and bare["compute"]["flops"] is None and bare["compute"]["gflops_per_s"] is None
    assert bare["warnings"] == ["no manifest beside the artifact: inputs taken from the artifact itself; no parity or FLOPs"]


def test_the_peak_probe_is_cached_per_machine(host_records, bench_cache):
    cache = json.loads((bench_cache / "peak.json").read_text())
    (per_thread,) = cache.values()
    assert per_thread["1"] == pytest.approx(host_records[0]["compute"]["peak_gflops"])


def test_cli_table_json_and_html(tflite_artifacts, tmp_path, capsys):
    out, page = tmp_path / "r" / "results.json", tmp_path / "report.html"
    code = main(["bench", tflite_artifacts["fp32"], tflite_artifacts["int8"], "--runs", "15", "--warmup", "1",
                 "--baseline", "small_cnn_int8.tflite", "--json", str(out), "--html", str(page)])
    captured = capsys.readouterr()
    assert code == 0
    records = load_results(out)
    fp32, int8 = records
    lines = captured.out.splitlines()
    assert lines[0].split()[:6] == ["artifact", "device", "size", "p50", "ms", "p90"]
    row = {line.split()[0]: line for line in lines[2:4]}
    assert "1.00x" in row["small_cnn_int8.tflite"]
    assert f"{int8['timings_ms']['p50'] / fp32['timings_ms']['p50']:.2f}x" in row["small_cnn_fp32.tflite"]
    assert f"{fp32['timings_ms']['p50']:.3f}" in row["small_cnn_fp32.tflite"]
    assert f"passed {fp32['parity']['cosine']:.4f}" in row["small_cnn_fp32.tflite"]
    assert "speed-up: latency of small_cnn_int8.tflite / latency of the row" in captured.out
    assert "[host] small_cnn_fp32.tflite: p50" in captured.err
    html = page.read_text()
    assert html.count("<svg") == 3  # latency distributions, size vs latency vs parity, memory
    assert "Size vs latency vs parity" in html and "Latency distribution" in html
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)  # readable offline: nothing fetched
    embedded = json.loads(re.search(r'id="edgekit-results">(.*?)</script>', html, re.S).group(1))
    assert [r["timings_ms"]["p50"] for r in embedded] == [r["timings_ms"]["p50"] for r in records]


def test_a_hang_times_out_and_the_next_artifact_carries_on(tflite_artifacts, capsys):
    code = main(["bench", tflite_artifacts["fp32"], tflite_artifacts["int8"], "--runs", "1000000000", "--timeout", "2",
                 "--json", "-", "-q"])
    captured = capsys.readouterr()
    assert code == 8
    assert "warning: [host] small_cnn_fp32.tflite: timeout: host: small_cnn_fp32.tflite did not finish within 2 s (--timeout); stopped" in captured.err
    first = json.loads(captured.out)["results"][0]
    assert first["status"] == "timeout" and first["timings_ms"] is None
    # the second artifact is not stuck behind the first: it is measured (and itself stopped at 2 s)
    assert "small_cnn_int8.tflite: timeout" in captured.err


def test_min_time_and_real_data(tflite_artifacts, tmp_path):
    data = tmp_path / "inputs.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((7, 1, 3, 32, 32)).astype(np.float32))
    (record,) = run_bench([tflite_artifacts["int8"]], runs=3, warmup=0, min_time=0.3, data=str(data))
    assert record["status"] == "ok" and record["settings"]["inputs"] == str(data)
    assert record["settings"]["min_time_s"] == 0.3
    assert record["timings_ms"]["count"] > 3  # kept going until 0.3 s had passed


def test_bad_data_is_that_artifacts_error_line(tflite_artifacts, tmp_path):
    data = tmp_path / "wrong.npz"
    np.savez(data, x=np.zeros((4, 3, 8, 8), np.float32))
    (record,) = run_bench([tflite_artifacts["fp32"]], runs=2, data=str(data))
    assert record["status"] == "error"
    assert "--data" in record["error"] and "has shape (4, 3, 8, 8)" in record["error"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "nope.tflite"], "error: nope.tflite: no such artifact"),
        (["bench", "{fp32}", "--device", "phone"], "error: --device 'phone': unknown device; use one of host, ssh://"),
        (["bench", "{fp32}", "--baseline", "other.tflite"], "error: --baseline other.tflite: not one of the artifacts"),
        (["bench", "{fp32}", "--runs", "0"], "error: --runs must be 1 or more, got 0"),
        (["bench", "{fp32}", "--cpu-mask", "big"], "error: --cpu-mask 'big': expected a hex CPU mask"),
        (["bench", "{readme}"], "not an artifact edgekit knows"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, message, tflite_artifacts, tmp_path, capsys):
    readme = tmp_path / "notes.txt"
    readme.write_text("x")
    argv = [a.format(fp32=tflite_artifacts["fp32"], readme=readme) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_another_target_is_measured_through_its_runtime(tmp_path):
    """The measuring side only knows the Runtime interface: an ONNX artifact goes the same way."""
    from edgekit.pipeline import convert
    from tests import models

    (artifact,) = convert(models.mlp(), target="onnx", inputs=["x:1x64"], output_dir=str(tmp_path))
    (record,) = run_bench([artifact.path], runs=10, warmup=1)
    assert record["status"] == "ok", record["error"]
    assert record["artifact"]["target"] == "onnx" and record["runtime"]["name"] == "onnxruntime"
    assert record["compute"]["flops"] == artifact.manifest["flops"]
