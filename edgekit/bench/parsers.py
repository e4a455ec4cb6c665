"""Turn what the native runners print into the result schema's timings and memory sections.

Formats followed (from the tools' source, not from captured phone logs):
- LiteRT / TensorFlow Lite `benchmark_model` (tensorflow/lite/tools/benchmark/benchmark_model.cc and
  tsl/util/stats_calculator.h). Each run phase logs a Stat line
  ``count=50 first=812 curr=790 min=776 max=905 avg=801.3 std=21`` (all-same runs print
  ``count=N curr=X(all same)``); builds since TF 2.15 use StatWithPercentiles and append
  ``p5=.. median=.. p95=..``. The end-of-run summary is
  ``Inference timings in us: Init: I, First inference: F, Warmup (avg): W, Inference (avg): A``
  (TF <= 2.3 printed ``Average inference timings in us: Warmup: W, Init: I, Inference: A``).
  Memory: ``Memory footprint delta from the start of the tool (MB): init=.. overall=..`` (TF 2.4+;
  TF <= 2.3 called the same delta ``Peak memory footprint (MB): init=.. overall=..``) and, with
  --report_peak_memory_footprint, ``Overall peak memory footprint (MB) via periodic monitoring: P``.
  MB there is max_rss_kb / 1024.
- ExecuTorch `executor_runner` (examples/portable/executor_runner/executor_runner.cpp, read at
  pytorch/executorch 018a3a524425b33dcf8be85894ee5a1e83bc138c, the 1.4+ form the pinned 1.5.1 prints),
  on stderr through ET_LOG: ``Setting up CPU planned buffer N, size S.`` per CPU memory-planned
  buffer (``Setting up device planned buffer N, size S, device_type D.`` for accelerator memory;
  before 1.4 ``Setting up planned buffer N, size S.``), ``Model loaded in T ms.``,
  ``Iteration I of N: T ms`` per run, and ``Model executed successfully N time(s) in T ms.``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_MIB = 1024 * 1024

_STAT = re.compile(
    rf"count=(?P<count>\d+)(?: first=(?P<first>{_NUM}))?(?: curr=(?P<curr>{_NUM}))?(?P<same>\(all same\))?"
    rf"(?: min=(?P<min>{_NUM}))?(?: max=(?P<max>{_NUM}))?(?: avg=(?P<avg>{_NUM}))?(?: std=(?P<std>{_NUM}))?"
    rf"(?: p5=(?P<p5>{_NUM}) median=(?P<median>{_NUM}) p95=(?P<p95>{_NUM}))?"
)
_SUMMARY = re.compile(
    rf"Inference timings in us: Init: (?P<init>{_NUM}), First inference: (?P<first>{_NUM}), "
    rf"Warmup \(avg\): (?P<warmup>{_NUM}), Inference \(avg\): (?P<avg>{_NUM})"
)
_SUMMARY_OLD = re.compile(
    rf"Average inference timings in us: Warmup: (?P<warmup>{_NUM}), Init: (?P<init>{_NUM}), "
    rf"(?:Inference|no stats): (?P<avg>{_NUM})"
)
_DELTA = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                    rf"init=(?P<init>{_NUM}) overall=(?P<overall>{_NUM})")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>{_NUM})")
_ET_DONE = re.compile(rf"Model executed successfully (?P<count>\d+) time\(s\)(?: in (?P<ms>{_NUM}) ms)?")
# "CPU " since ExecuTorch 1.4; older runners print "Setting up planned buffer N, size S."
_ET_BUFFER = re.compile(r"Setting up (?:CPU )?planned buffer (\d+), size (\d+)")
_ET_DEVICE_BUFFER = re.compile(r"Setting up device planned buffer (\d+), size (\d+)")
_ET_LOADED = re.compile(rf"Model loaded in (?P<ms>{_NUM}) ms")
_ET_ITERATION = re.compile(rf"Iteration \d+ of \d+: (?P<ms>{_NUM}) ms")


class RunnerOutputError(ValueError):
    """The runner's output lacks the lines a result needs (the message says which)."""


def _ms(value: str | None) -> float | None:
    return None if value is None else float(value) / 1000.0


def parse_benchmark_model(text: str) -> dict:
    """benchmark_model output -> {"timings_ms", "memory", "p5_ms", "p95_ms"}."""
    summary = _SUMMARY.search(text)
    old = None if summary else _SUMMARY_OLD.search(text)
    if not summary and not old:
        raise RunnerOutputError("benchmark_model printed no 'Inference timings in us' line")
    # the Stat line of the timed phase is the last one before the summary (the warm-up's comes first)
    before = text[: (summary or old).start()]
    stats = [m for m in _STAT.finditer(before) if m.group("count")]
    timed = stats[-1] if stats else None
    avg_us = float((summary or old).group("avg"))
    timings = {
        "load": _ms((summary or old).group("init")),
        "first": _ms(summary.group("first")) if summary else None,
        "mean": avg_us / 1000.0,
        "std": None, "min": None, "p50": None, "p90": None, "p99": None, "max": None,
        "count": int(timed.group("count")) if timed else 0,
    }
    extra = {"p5_ms": None, "p95_ms": None}
    if timed is not None:
        if timed.group("same"):  # every run took the same time
            value = _ms(timed.group("curr"))
            timings.update({"std": 0.0, "min": value, "max": value, "p50": value})
        else:
            timings.update({"std": _ms(timed.group("std")), "min": _ms(timed.group("min")), "max": _ms(timed.group("max"))})
            timings["p50"] = _ms(timed.group("median"))
        extra = {"p5_ms": _ms(timed.group("p5")), "p95_ms": _ms(timed.group("p95"))}
    if not timings["count"]:
        raise RunnerOutputError("benchmark_model printed no count= line for the timed runs")
    # benchmark_model's one memory number is the peak RSS of its own process (schema.MEMORY_DEFINITIONS);
    # its "footprint delta" (max RSS growth since the tool started) is kept under its own name, never
    # as model_rss_bytes, which means "peak minus a twin process without the model" elsewhere
    memory = {"peak_rss_bytes": None, "baseline_rss_bytes": None, "model_rss_bytes": None, "arena_bytes": None,
              "footprint_delta_bytes": None}
    delta = _DELTA.search(text)
    if delta:
        memory["footprint_delta_bytes"] = int(float(delta.group("overall")) * _MIB)
    peak = _PEAK.search(text)
    if peak:
        memory["peak_rss_bytes"] = int(float(peak.group("peak")) * _MIB)
    return {"timings_ms": timings, "memory": memory, **extra}


def parse_executor_runner(text: str) -> dict:
    """executor_runner output -> {"timings_ms", "memory"}. Runners since 1.4 print every run
    (``Iteration I of N``), so the percentiles are real; older ones only the total over N runs."""
    from edgekit.bench.stats import summarize

    done = _ET_DONE.search(text)
    if not done:
        raise RunnerOutputError("executor_runner did not print 'Model executed successfully'")
    if done.group("ms") is None:
        raise RunnerOutputError("this executor_runner does not print its run time (build it from ExecuTorch 0.4 or later)")
    count = int(done.group("count"))
    runs = [float(m.group("ms")) for m in _ET_ITERATION.finditer(text)]
    if len(runs) == count and runs:
        timings = {**summarize(runs), "load": None, "first": runs[0]}
    else:
        timings = {"load": None, "first": None, "mean": float(done.group("ms")) / max(1, count), "std": None, "min": None,
                   "p50": None, "p90": None, "p99": None, "max": None, "count": count}
    loaded = _ET_LOADED.search(text)
    if loaded:
        timings["load"] = float(loaded.group("ms"))
    buffers = {int(i): int(size) for i, size in _ET_BUFFER.findall(text)}
    memory = {"peak_rss_bytes": None, "baseline_rss_bytes": None, "model_rss_bytes": None,
              "arena_bytes": sum(buffers.values()) if buffers else None}
    return {"timings_ms": timings, "memory": memory, "samples_ms": runs if len(runs) == count else None}


# -- how each native runner is driven: its command line, its output, its caveats -------------------
# A target names its runner (targets/base.py OnDevice.runner); this table says how edgekit drives a
# runner of that name. A new runner is one entry here (plus its parser above).

def _benchmark_model_argv(remote_artifact: str, settings) -> list[str]:
    return ["--graph=" + remote_artifact, f"--num_threads={settings.threads}", f"--warmup_runs={settings.warmup}",
            "--warmup_min_secs=0", f"--num_runs={settings.runs}", f"--min_secs={settings.min_time or 0:g}",
            f"--max_secs={settings.timeout:g}", "--report_peak_memory_footprint=true"]


def _executor_runner_argv(remote_artifact: str, settings) -> list[str]:
    return [f"--model_path={remote_artifact}", f"--num_executions={settings.runs}", f"--cpu_threads={settings.threads}"]


def _benchmark_model_notes(parsed: dict) -> list[str]:
    return ["benchmark_model reports no p90/p99 (median, p5 and p95 only, on TF 2.15+ builds)"]


def _executor_runner_notes(parsed: dict) -> list[str]:
    if parsed.get("samples_ms") is None:
        return ["executor_runner reports only the mean over all runs (first run included, no warm-up); "
                "std and percentiles need ExecuTorch 1.4+'s runner or the Android sample app"]
    return ["executor_runner has no warm-up: the first timed run includes first-run costs"]


@dataclass(frozen=True)
class NativeTool:
    arguments: Callable[[str, object], list[str]]  # (artifact path on the device, BenchSettings) -> flags
    parse: Callable[[str], dict]
    inputs: str  # what it feeds the model: the record's settings.inputs
    notes: Callable[[dict], list[str]]


NATIVE_TOOLS = {
    "benchmark_model": NativeTool(_benchmark_model_argv, parse_benchmark_model, "random", _benchmark_model_notes),
    "executor_runner": NativeTool(_executor_runner_argv, parse_executor_runner, "ones", _executor_runner_notes),
}
