"""RESULTS.md and the plots, from the results document the suite writes (benchmarks/results/results.json).

Judging is done here, once: which of the issue's targets each row reaches, written as
"reached" / "NOT reached" with the numbers, and which edgekit rows missed their parity target
without edgekit failing them (exit code 1).
"""
from __future__ import annotations

import os
from typing import Any

from benchmarks.suite import int8_report

# The targets (issue 8), in one place.
INT8_TOP1 = 0.99
INT8_ACCURACY_DROP = 0.01
INT8_SIZE_RATIO = 0.30
LATENCY_RATIO = 1.0
TARGET_ALL_RATIO = 0.70
INTEGER_PRECISIONS = ("int8", "int8-dynamic")  # precisions the INT8 targets apply to

# Why a check is not reached, where it was investigated: (check prefix, "where" substring, explanation).
# Attached only to checks that are NOT reached in the run being written.
EXPLANATIONS: list[tuple[str, str, str]] = [
    ("INT8 top-1", "efficientnet_lite0 ", "EfficientNet-Lite0, static int8: the same PT2E recipe simulated in eager PyTorch "
     "(convert_pt2e output run as a PyTorch module, no converter involved) gives cosine 0.82 and top-1 agreement 0.47 "
     "(24 calibration photos) / 0.54 (64) on these photos, so the loss is in int8 activations of this network, not in any "
     "conversion; every tool's static int8 misses (edgekit's TFLite int8, which keeps the closer of PT2E and "
     "ai-edge-quantizer's static recipe, comes closest). Not tried here: quantization-aware training "
     "(`edgekit distill --qat int8`), or per-layer float fallbacks."),
    ("INT8 top-1", "efficientnet_lite0 tflite int8-dynamic", "EfficientNet-Lite0, int8 weights: even weight-only int8 "
     "(trial: cosine 0.9937) flips top-1 on 11 % of the photo views. The flips sit where FP32 itself hesitates: FP32's median "
     "top-1 probability on these views (crops of scikit-image photos, many not ImageNet classes: text, logo, colour wheel, "
     "microscopy) is 0.28, every disagreement had an FP32 top-2 margin under 0.2, and on the 74 views with a margin "
     "above 0.2 agreement was 100 %. Top-1 agreement on out-of-distribution inputs is a strict measure; the cosine column "
     "shows the size of the error."),
    ("INT8 top-1", "minilm_intent", "MiniLM, static int8: int8 activations inside the transformer (attention scores, "
     "LayerNorm and GELU inputs, which have outliers) lose the intent decision; with activations quantized per call "
     "(int8-dynamic), the same int8 weights keep it, see the int8-dynamic rows."),
    ("INT8 top-1", "minilm_intent tflite int8-dynamic", "MiniLM, int8-dynamic: the sentences are fortune-cookie texts, "
     "not the intent data set's queries, so the intent head often hesitates (FP32's median top-1 probability 0.21). In the "
     "TFLite int8-dynamic run every disagreement (5 of 200) had an FP32 top-2 probability margin under 0.012, a near tie; on "
     "the 164 sentences with a margin above 0.02 agreement was 100 %."),
    ("INT8 size", "minilm_intent", "MiniLM INT8 size: PT2E and the dynamic recipes quantize linear layers only; the "
     "30,522 x 384 token-embedding table (11.7M of 22.7M parameters, 47 MB) stays float32, which bounds the ratio near "
     "0.65x where it is not quantized (onnxruntime's static quantizer also quantizes the embedding Gather)."),
    ("INT8 size", "torchscript-lite int8-dynamic", "TorchScript Lite int8-dynamic (both tools): PyTorch's dynamic "
     "quantization covers linear layers only, so a convolutional network keeps its float convolutions (EfficientNet-Lite0 "
     "0.79x), and MiniLM keeps its float embedding table."),
    ("latency", "", "Latency ratios a few percent above 1.00 are within the round-to-round spread measured in the same "
     "run (shown beside each ratio): both sides run near-identical programs in the same runtime. The lite interpreter's "
     "timings (torchscript-lite) swung 10-100x between rounds on this shared machine (PyTorch's intra-op threads compete "
     "with other processes), so its ratios carry no information here."),
    ("converts", "minilm_intent executorch", "MiniLM on ExecuTorch int8 / int8-dynamic: the XNNPACK quantizer flow fails "
     "the same way called directly (IndexError in the quantized graph's embedding lookup), so neither side has an "
     "artifact; not investigated further."),
    ("--target all", "", "`--target all` does more than the direct side: it verifies every artifact against eager "
     "PyTorch (32 evaluation samples per target by default) and writes manifests, while the direct scripts only convert. "
     "The --no-verify column (from runs after this check was added) gives the like-for-like ratio."),
    ("INT8 top-1", "minilm_intent onnx", "MiniLM on ONNX: onnxruntime's own pre-processing (quant_pre_process, which "
     "its quantization guide runs first) fails in symbolic shape inference on the Expand node of transformers' "
     "attention-mask code (TypeError), so the direct int8 rows have no artifact; edgekit retries without symbolic shape "
     "inference and converts. Its 7-bit weights (reduce_range, chosen for x86 AVX2 kernels) cost top-1 (0.90) against "
     "TFLite's 8-bit dynamic weights (0.975)."),
    ("converts", "minilm_intent coreml", "MiniLM on Core ML: coremltools 9 cannot convert the aten.new_ones that "
     "transformers' BERT mask code emits under torch.export; edgekit names the op and where it sits."),
]


def _mb(n) -> str:
    return "" if n is None else (f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB")


def _f(v, digits=4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _ms(v) -> str:
    return "" if v is None else (f"{v:.2f}" if v >= 1 else f"{v:.3f}")


def find(rows, **match) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def size_ratio(rows, row) -> float | None:
    fp32 = find(rows, target=row["target"], tool=row["tool"], precision="none")
    if not fp32 or not fp32.get("size_bytes") or not row.get("size_bytes"):
        return None
    return row["size_bytes"] / fp32["size_bytes"]


def best_p50(row) -> float | None:
    """The artifact's p50 in its best round: on a shared machine, load only ever adds time."""
    bench = (row or {}).get("bench") or {}
    rounds = [v for v in bench.get("rounds_p50_ms") or [] if v]
    return min(rounds) if rounds else bench.get("p50_ms")


def latency_ratio(rows, row) -> float | None:
    other = find(rows, target=row["target"], precision=row["precision"], tool="direct")
    mine, theirs = best_p50(row), best_p50(other)
    return mine / theirs if mine and theirs else None


def noise(rows, row) -> float | None:
    """Round-to-round spread of the two artifacts' p50 (max/min - 1): how much a ratio can move by chance."""
    other = find(rows, target=row["target"], precision=row["precision"], tool="direct")
    spreads = []
    for r in (row, other):
        values = ((r or {}).get("bench") or {}).get("rounds_p50_ms") or []
        if len(values) > 1:
            spreads.append(max(values) / min(values) - 1)
    return max(spreads) if spreads else None


def _verdict(row) -> str:
    if row["tool"] != "edgekit":
        return ""
    status = row.get("status")
    verdict = f"{status} (exit {row.get('exit_code')})" if status else ""
    return verdict + (f"; from the run of {row['carried_from']}" if row.get("carried_from") else "")


def _interpreted(row) -> tuple[str, str]:
    """(cosine, top-1) cells of a Core ML row on Linux: Core ML cannot run here, so the suite has no
    parity of its own; an edgekit row shows what its verification measured with edgekit's MIL reference
    interpreter (on the case's verify_samples), labelled as such."""
    ep = row.get("edgekit_parity") or {}
    if row["tool"] != "edgekit" or ep.get("cosine") is None:
        return "n/a on Linux", "n/a on Linux"
    label = f" (MIL reference interpreter, {ep.get('samples')} inputs)"
    return _f(ep["cosine"], 5) + label, _f(ep.get("top1")) + " (interpreter)"


def model_table(model: dict) -> list[str]:
    rows = model["rows"]
    acc = model.get("fp32_accuracy") is not None
    head = ["target", "precision", "tool", "size", "x FP32 size", "cosine", "top-1 agr."] + (["accuracy"] if acc else []) + \
           ["p50 ms (best round)", "p90 ms", "p50 edgekit/direct", "peak RSS", "convert s", "edgekit verify"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        p = row.get("parity") or {}
        b = row.get("bench") or {}
        ratio = latency_ratio(rows, row) if row["tool"] == "edgekit" else None
        sr = size_ratio(rows, row)
        if row.get("error") and not row.get("path"):
            what = "no direct recipe" if row.get("status") == "n/a" else "not converted"
            cells = [row["target"], row["precision"], row["tool"], f"{what}: {row['error'][:160]}"] + [""] * (len(head) - 4)
            if row["tool"] == "edgekit":
                cells[-1] = _verdict(row)
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
            continue
        not_here = row["target"] == "coreml" and not p
        cells = [
            row["target"], row["precision"], row["tool"], _mb(row.get("size_bytes")),
            "" if sr is None or row["precision"] == "none" else f"{sr:.2f}x",
            *(_interpreted(row) if not_here else (_f(p.get("cosine"), 5), _f(p.get("top1")))),
        ]
        if acc:
            cells.append("n/a on Linux" if not_here else _f(p.get("accuracy")))
        cells += [
            "n/a on Linux" if not_here else (_ms(best_p50(row)) or row.get("bench_error", "")[:80]),
            "" if not_here else _ms(b.get("p90_ms")),
            "" if ratio is None else f"{ratio:.2f}",
            "" if not b.get("peak_rss_bytes") else _mb(b["peak_rss_bytes"]),
            _f(row.get("convert_s"), 1),
            _verdict(row),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def enforced_top1(p: dict) -> tuple[float, str]:
    """The top-1 agreement that edgekit's tolerance enforces (README "Verification"): on the inputs
    where FP32 is confident when there are enough of them, else on all; and which one it is."""
    from edgekit.verify_roles import MIN_CONFIDENT

    n = p.get("confident_samples")
    if n is not None and n >= MIN_CONFIDENT and p.get("top1_confident") is not None:
        return p["top1_confident"], f"on {n} confident inputs"
    return p["top1"], "on all inputs"


def judge(doc: dict) -> list[dict[str, Any]]:
    """One entry per check: what, the numbers, reached or not, and why where known."""
    from edgekit.options import get_precision

    checks = []
    for model in doc["models"]:
        rows, name = model["rows"], model["name"]
        for row in rows:
            if row["tool"] != "edgekit":
                continue
            p = row.get("parity") or {}
            where = f"{name} {row['target']} {row['precision']}"
            if row.get("error") and not row.get("path"):
                checks.append({"check": "converts", "where": where, "value": row["error"][:200], "reached": False})
                continue
            static = row["precision"] == int8_report.STATIC  # judged by int8_report.static_checks below
            if row["precision"] in INTEGER_PRECISIONS and not static:
                if p:
                    top1, on = enforced_top1(p)
                    checks.append({"check": "INT8 top-1 agreement >= 99 %", "where": where,
                                   "value": f"{top1:.4f} {on}" + ("" if on == "on all inputs" else f" (all inputs: {p['top1']:.4f})"),
                                   "reached": top1 >= INT8_TOP1})
                    if p.get("accuracy") is not None and model.get("fp32_accuracy") is not None:
                        drop = model["fp32_accuracy"] - p["accuracy"]
                        checks.append({"check": "INT8 accuracy loss <= 1 point", "where": where,
                                       "value": f"{100 * drop:+.2f} points ({model['fp32_accuracy']:.4f} -> {p['accuracy']:.4f})",
                                       "reached": drop <= INT8_ACCURACY_DROP})
                elif row["target"] == "coreml":
                    checks.append({"check": "INT8 top-1 agreement >= 99 %", "where": where, "value": "n/a on Linux",
                                   "reached": None})
                sr = size_ratio(rows, row)
                if sr is not None:
                    checks.append({"check": "INT8 size <= 0.3x FP32", "where": where, "value": f"{sr:.3f}x",
                                   "reached": sr <= INT8_SIZE_RATIO})
            ratio = None if static else latency_ratio(rows, row)
            if ratio is not None:
                spread = noise(rows, row)
                checks.append({"check": "latency edgekit/direct <= 1.0", "where": where,
                               "value": f"{ratio:.3f}" + (f" (round-to-round noise {100 * spread:.0f} %)" if spread is not None else ""),
                               "reached": ratio <= LATENCY_RATIO})
            if p and row["target"] != "coreml":
                tol = get_precision(row["precision"]).tolerance
                top1, on = enforced_top1(p)
                missed = p["cosine"] < tol.cosine or top1 < tol.top1 or p["cosine"] != p["cosine"]
                if missed:
                    caught = row.get("exit_code") == 1
                    checks.append({"check": "a parity miss is caught by edgekit (exit 1)", "where": where,
                                   "value": f"suite: cosine {p['cosine']:.5f}, top-1 {top1:.4f} ({on}) vs tolerance "
                                            f"cosine {tol.cosine}, top-1 {tol.top1}; edgekit: {row.get('status')} (exit {row.get('exit_code')})",
                                   "reached": caught})
        checks += int8_report.static_checks(model)
    for entry in doc.get("target_all", []):
        if entry.get("ratio") is not None:
            checks.append({"check": "--target all <= 0.7x the sum of direct conversions", "where": entry["model"],
                           "value": f"{entry['ratio']:.2f} ({entry['edgekit_s']:.0f} s vs {entry['direct_sum_s']:.0f} s)",
                           "reached": entry["ratio"] <= TARGET_ALL_RATIO})
    failing = doc.get("failing_check")
    if failing:
        checks.append({"check": "a deliberately failing precision exits 1", "where": failing["what"],
                       "value": f"exit {failing['exit_code']}: {failing.get('line', '')[:200]}", "reached": failing["exit_code"] == 1})
    return checks


def plots(doc: dict, folder: str) -> list[str]:
    """One PNG per model (size, and host p50, edgekit beside direct), and one for --target all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    written = []
    for model in doc["models"]:
        rows = model["rows"]
        keys = list(dict.fromkeys((r["target"], r["precision"]) for r in rows))
        labels = [f"{t.replace('torchscript-lite', 'ts-lite')}\n{'fp32' if p == 'none' else p}" for t, p in keys]
        fig, axes = plt.subplots(2, 1, figsize=(max(7, 0.75 * len(keys)), 6.5))
        for ax, metric, title in ((axes[0], "size", "artifact size (MB)"),
                                  (axes[1], "p50", "host p50 latency, best round (ms, log scale; lower is better)")):
            for offset, tool, color in ((-0.2, "edgekit", "#1f77b4"), (0.2, "direct", "#ff7f0e")):
                values = []
                for t, p in keys:
                    r = find(rows, target=t, precision=p, tool=tool) or {}
                    v = (r.get("size_bytes") or 0) / 1e6 if metric == "size" else (best_p50(r) or 0)
                    values.append(v)
                ax.bar([i + offset for i in range(len(keys))], values, width=0.4, label=tool if tool == "edgekit" else "library directly", color=color)
            ax.set_xticks(range(len(keys)))
            ax.set_xticklabels(labels, fontsize=7)
            ax.set_title(title, fontsize=9)
            if metric == "p50":
                ax.set_yscale("log")
            ax.legend(fontsize=7)
        fig.suptitle(model["title"], fontsize=10)
        fig.tight_layout()
        path = os.path.join(folder, f"{model['name']}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    if doc.get("target_all"):
        entries = [e for e in doc["target_all"] if e.get("ratio") is not None]
        if entries:
            fig, ax = plt.subplots(figsize=(6, 3.2))
            for i, e in enumerate(entries):
                bottom = 0.0
                for name, seconds in e["direct_s"].items():
                    ax.bar(i - 0.2, seconds, 0.4, bottom=bottom, color="#ff7f0e", edgecolor="white")
                    ax.text(i - 0.2, bottom + seconds / 2, name, ha="center", va="center", fontsize=6)
                    bottom += seconds
                ax.bar(i + 0.2, e["edgekit_s"], 0.4, color="#1f77b4")
                ax.text(i + 0.2, e["edgekit_s"], f"{e['ratio']:.2f}x", ha="center", va="bottom", fontsize=8)
            ax.set_xticks(range(len(entries)))
            ax.set_xticklabels([e["model"] for e in entries], fontsize=8)
            ax.set_ylabel("wall seconds (fresh processes)")
            ax.set_title("edgekit convert --target all (blue) vs each library directly, summed (orange)", fontsize=8)
            fig.tight_layout()
            path = os.path.join(folder, "target_all.png")
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(path)
    return written


SECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "sections")


def section_files() -> list[str]:
    """The sections other benchmark scripts wrote (benchmarks/results/sections/*.md, each with the
    command that made it): RESULTS.md carries them after the suite's own, so a suite run keeps them."""
    if not os.path.isdir(SECTIONS):
        return []
    out: list[str] = []
    for name in sorted(os.listdir(SECTIONS)):
        if name.endswith(".md"):
            with open(os.path.join(SECTIONS, name), encoding="utf-8") as fh:
                out += [fh.read().rstrip("\n"), ""]
    return out


def _header(doc: dict) -> list[str]:
    """Title, provenance (command, date, machine, versions) and how each column is measured."""
    m = doc["machine"]
    return [
        "# edgekit on real models, beside the libraries called directly",
        "",
        "Written by `python -m benchmarks` (benchmarks/__main__.py); do not edit by hand.",
        "",
        f"- command: `{doc['command']}`",
        f"- date: {doc['started']} (UTC); suite wall time {doc['wall_s'] / 60:.1f} min"
        + ("; rows this run did not measure are carried from earlier runs (`--merge`), each naming its run "
           "in its last column" if doc.get("merged_from") else ""),
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']:.0f} GB, {m['os']}; load average "
        f"{m['load_start']:.1f} at the start, {m['load_end']:.1f} at the end (the machine is shared: compare ratios "
        "measured in the same run, not absolute times across runs)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()),
        f"- latency: `edgekit bench` (run_bench on host, {doc['settings']['threads']} threads, {doc['settings']['warmup']} warm-up + "
        f"{doc['settings']['runs']} timed runs per round, {doc['settings']['rounds']} rounds in alternating order, seeded random "
        "inputs); p50 is the artifact's best round (load on a shared machine only adds time), p90 the mean over rounds; "
        "the ratio edgekit/direct compares best rounds, and the noise beside it is the larger round-to-round spread of the two; "
        "peak RSS is the measuring process's peak resident memory",
        "- parity: every artifact runs the whole evaluation set through edgekit's runtime for its format (LiteRT interpreter, "
        "onnxruntime CPU, ExecuTorch runtime, lite interpreter) and is compared with eager FP32 PyTorch: cosine over all "
        "logits, top-1 agreement, and test accuracy where the data has labels. Independently, edgekit verifies its own "
        "artifact while converting (its verdict and the CLI exit code are in the last column)",
        "- convert s: in-process wall time with the library already imported, each side with a fresh copy of the model; "
        "edgekit's includes loading the data, the shared export and its verification",
        "",
    ]


def _target_all_section(doc: dict, images, plot_folder: str, rel) -> list[str]:
    """`edgekit convert --target all` against each library directly, in fresh processes."""
    if not doc.get("target_all"):
        return []
    out = ["## `edgekit convert --target all` against each library directly", "",
            "Fresh processes (imports and model loading counted, as a user pays them). edgekit converts to every "
            "installed target at each target's default precision and verifies each artifact (its defaults); the "
            "direct side is `python -m benchmarks.suite.direct` once per target with the same precision.", "",
            "| model | edgekit --target all | direct, summed | ratio | --no-verify (ratio) | per target (direct) | edgekit statuses |",
            "|---|---|---|---|---|---|---|"]
    for e in doc["target_all"]:
        if e.get("error"):
            out.append(f"| {e['model']} | error: {e['error'][:200]} | | | | | |")
            continue
        per = ", ".join(f"{k} {v:.0f} s" for k, v in e["direct_s"].items())
        statuses = ", ".join(f"{k} {v}" for k, v in e["statuses"].items())
        noverify = f"{e['edgekit_noverify_s']:.0f} s ({e['ratio_noverify']:.2f})" if e.get("edgekit_noverify_s") else "not in this run"
        out.append(f"| {e['model']} | {e['edgekit_s']:.0f} s | {e['direct_sum_s']:.0f} s | {e['ratio']:.2f} | {noverify} | {per} | {statuses} |")
    image = os.path.join(plot_folder, "target_all.png")
    if image in images:
        out += ["", f"![target all]({rel(image)})"]
    out.append("")
    return out


def _recipes_section(doc: dict) -> list[str]:
    """What \"the library directly\" means in each row of the tables."""
    out = ["## The direct recipes", "", "What \"the library directly\" means in each row: its documented entry point with "
            "its defaults, on the same model, example inputs and calibration samples.", "",
            "| target | precision | recipe |", "|---|---|---|"]
    from benchmarks.suite.cases import DIRECT_MISSING
    from benchmarks.suite.direct import RECIPES

    used = list(dict.fromkeys((r["target"], r["precision"]) for m in doc["models"] for r in m["rows"]))
    for key in used:
        recipe = RECIPES.get(key) or (f"none: {DIRECT_MISSING[key]}" if key in DIRECT_MISSING else "none")
        out.append(f"| {key[0]} | {key[1]} | {recipe} |")
    out.append("")
    return out


def write(doc: dict, md_path: str, plot_folder: str) -> list[dict]:
    checks = judge(doc)
    images = plots(doc, plot_folder)
    rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(md_path)))  # noqa: E731
    out = _header(doc)
    if doc.get("quick"):
        out += ["**Quick run (--quick): reduced data, not the published numbers.**", ""]
    out += ["## Targets", "", "| check | where | value | |", "|---|---|---|---|"]
    for c in checks:
        mark = "n/a" if c["reached"] is None else ("reached" if c["reached"] else "**NOT reached**")
        out.append(f"| {c['check']} | {c['where']} | {c['value']} | {mark} |")
    reached = sum(1 for c in checks if c["reached"])
    missed = [c for c in checks if c["reached"] is False]
    out += ["", f"{reached} of {sum(1 for c in checks if c['reached'] is not None)} checks reached; "
            f"{len(missed)} not reached." + (" Why, where known: see the notes below." if missed else ""), ""]
    notes = list(dict.fromkeys(text for prefix, where, text in EXPLANATIONS
                               if any(c["check"].startswith(prefix) and where in c["where"] for c in missed)))
    if notes:
        out += ["### Why targets were not reached (investigated)", ""] + [f"- {n}" for n in notes] + [""]
    for model in doc["models"]:
        out += [f"## {model['title']}", ""]
        out += [f"- data: {n}" for n in model["data_notes"]]
        if model.get("fp32_accuracy") is not None:
            out.append(f"- eager FP32 PyTorch test accuracy: {model['fp32_accuracy']:.4f}")
        out.append("")
        out += model_table(model)
        image = os.path.join(plot_folder, f"{model['name']}.png")
        if image in images:
            out += ["", f"![{model['name']}]({rel(image)})"]
        out.append("")
    out += int8_report.before_after(doc)
    out += _target_all_section(doc, images, plot_folder, rel)
    failing = doc.get("failing_check")
    if failing:
        out += ["## A precision that misses parity is not shipped as passed", "",
                f"`{failing['command']}`", "", f"exit code {failing['exit_code']}; edgekit printed:", "", "```",
                *failing.get("output", "").strip().splitlines()[-12:], "```", ""]
    out += _recipes_section(doc)
    out += section_files()
    with open(md_path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write("\n".join(out))
    os.replace(md_path + ".tmp", md_path)
    return checks
