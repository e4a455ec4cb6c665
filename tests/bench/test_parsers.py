"""Native runner output -> schema sections, on replays written from the tools' source (see fixtures/README.md)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.bench.parsers import RunnerOutputError, parse_benchmark_model, parse_executor_runner
from edgekit.bench.stats import summarize, throughput

FIXTURES = Path(__file__).with_name("fixtures")
MIB = 1024 * 1024


def test_benchmark_model_with_percentiles_and_periodic_peak():
    parsed = parse_benchmark_model((FIXTURES / "benchmark_model_2.16_android.txt").read_text())
    t = parsed["timings_ms"]
    # the timed phase's Stat line (count=50), not the warm-up's (count=5)
    assert t["count"] == 50
    assert t["mean"] == pytest.approx(0.63986)
    assert (t["min"], t["max"], t["std"], t["p50"]) == pytest.approx((0.618, 0.702, 0.014, 0.636))
    assert (t["load"], t["first"]) == pytest.approx((3.337, 0.812))
    assert t["p90"] is None and t["p99"] is None  # benchmark_model does not print them
    assert (parsed["p5_ms"], parsed["p95_ms"]) == pytest.approx((0.621, 0.671))
    m = parsed["memory"]
    # one memory number per runner: benchmark_model's is its process's peak RSS; its footprint delta
    # keeps its own name and never poses as the model's share
    assert m["peak_rss_bytes"] == int(9.67188 * MIB)
    assert m["footprint_delta_bytes"] == int(3.125 * MIB)
    assert m["model_rss_bytes"] is None and m["baseline_rss_bytes"] is None


def test_benchmark_model_of_tf_2_3_without_percentiles():
    parsed = parse_benchmark_model((FIXTURES / "benchmark_model_2.3_android.txt").read_text())
    t = parsed["timings_ms"]
    assert t["count"] == 50 and t["mean"] == pytest.approx(79.732)
    assert (t["min"], t["max"], t["std"]) == pytest.approx((77.385, 88.213, 1.929))
    assert t["p50"] is None and parsed["p95_ms"] is None
    assert parsed["memory"]["footprint_delta_bytes"] == int(26.0898 * MIB)
    assert parsed["memory"]["peak_rss_bytes"] is None


def test_benchmark_model_when_every_run_took_the_same_time():
    text = ("INFO: count=3 curr=250(all same) p5=250 median=250 p95=250\n\n"
            "INFO: count=10 curr=240(all same) p5=240 median=240 p95=240\n\n"
            "INFO: Inference timings in us: Init: 1000, First inference: 300, Warmup (avg): 250, Inference (avg): 240\n")
    t = parse_benchmark_model(text)["timings_ms"]
    assert (t["count"], t["std"], t["min"], t["max"], t["p50"]) == (10, 0.0, 0.24, 0.24, 0.24)


def test_benchmark_model_output_without_a_summary_says_so():
    with pytest.raises(RunnerOutputError, match="no 'Inference timings in us' line"):
        parse_benchmark_model("INFO: Loaded model x.tflite\nERROR: Failed to allocate tensors!\n")


def test_executor_runner_total_time_and_planned_buffers():
    parsed = parse_executor_runner((FIXTURES / "executor_runner_1.0_android.txt").read_text())
    t = parsed["timings_ms"]
    assert t["count"] == 50 and t["mean"] == pytest.approx(41.25 / 50)
    assert t["p50"] is None and t["std"] is None
    assert parsed["memory"]["arena_bytes"] == 12352


def test_executor_runner_1_5_per_run_times_and_cpu_planned_buffers():
    # ExecuTorch 1.4+ says "Setting up CPU planned buffer"; the pre-1.4 pattern alone lost the arena
    parsed = parse_executor_runner((FIXTURES / "executor_runner_1.5_android.txt").read_text())
    t = parsed["timings_ms"]
    assert parsed["memory"]["arena_bytes"] == 12352 + 2048
    assert t["count"] == 5 and t["first"] == pytest.approx(1.104) and t["load"] == pytest.approx(0.612)
    assert t["p50"] == pytest.approx(0.812) and t["max"] == pytest.approx(1.104) and t["mean"] == pytest.approx(4.337 / 5)
    assert parsed["samples_ms"] == pytest.approx([1.104, 0.823, 0.801, 0.797, 0.812])


def test_executor_runner_without_timing_is_rejected():
    with pytest.raises(RunnerOutputError, match="ExecuTorch 0.4 or later"):
        parse_executor_runner("I 00:00:00.1 executorch:executor_runner.cpp:99] Model executed successfully 10 time(s).\n")


def test_summary_statistics_match_numpy():
    rng = np.random.default_rng(3)
    samples = list(rng.gamma(4.0, 0.1, size=257))
    s = summarize(samples)
    assert s["count"] == 257
    assert s["mean"] == pytest.approx(np.mean(samples))
    assert s["std"] == pytest.approx(np.std(samples))
    for q in (50, 90, 99):
        assert s[f"p{q}"] == pytest.approx(np.percentile(samples, q))
    assert (s["min"], s["max"]) == (min(samples), max(samples))
    assert throughput(2.0) == 500.0 and throughput(None) is None
