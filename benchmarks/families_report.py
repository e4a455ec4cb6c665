"""Markdown for benchmarks/results/sections/families.md from the JSON that benchmarks/families.py writes."""
from __future__ import annotations

FAMILY_ORDER = ("crnn", "decoder", "efficientnet", "minilm")
TARGET_ORDER = ("tflite", "executorch", "onnx", "torchscript-lite", "coreml", "coreai")
PRECISION_ORDER = ("none", "fp16", "int8-dynamic", "int8")


def _size(n) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def render_lstm(data: dict) -> list[str]:
    if not data.get("rows"):
        return []
    rows = data["rows"]
    lines = [
        "### The LSTM recognizer's conversion cost (ExecuTorch vs TFLite)",
        "",
        f"`{data['command']}`: CRNN (conv stack + 2-layer BiLSTM over 32 steps + CTC head, 0.9M parameters, "
        "random weights; input 1x1x32x128). Time = one `edgekit.convert` (export, lowering, writing, "
        "verification on 8 samples) after the target's imports are warm; latency = median of 30 host "
        "runs of the artifact, 1 thread.",
        "",
        "| conversion | time | vs TFLite | status | cosine | nodes | delegated | portable ops | size | host latency |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    if data.get("line_accuracy") is not None:
        lines[2] = lines[2].replace("random weights", "trained here with CTC on digit strings, held-out line "
                                    f"accuracy {data['line_accuracy']:.2f} in eager PyTorch")
    base = next((r["seconds"] for r in rows if r["target"] == "tflite"), None)
    for r in rows:
        ratio = f"{r['seconds'] / base:.2f}x" if base else "-"
        portable = ", ".join(r.get("portable") or []) or "-"
        delegated = f"{r['delegated_percent']}%" if r.get("delegated_percent") is not None else "-"
        lines.append(f"| {r['label']} | {r['seconds']:.1f} s | {ratio} | {r['status']} | {_num(r['cosine'], '.7f')} | "
                     f"{r.get('nodes') or '-'} | {delegated} | {portable} | {_size(r['bytes'])} | {r['latency_ms']} ms |")
    return lines + ["", *LSTM_NOTES, ""]


LSTM_NOTES = [
    "ExecuTorch has no LSTM kernel, so every route unrolls the recurrence (or loops over it), and the",
    "conversion cost follows the node count: the edge passes and each of XNNPACK's ~20 preprocess passes",
    "re-run every node through a fake-tensor interpreter (a cProfile of the decomposed BiLSTM: half the time",
    "in XnnpackBackend.preprocess, 40% building the edge program; deep copies of each node's `from_node`",
    "provenance, which grows by one level per pass, are a quarter of it). Routes measured:",
    "- PyTorch's decomposition: one cell per step and direction, ~37 nodes per step (2-layer BiLSTM).",
    "- packed LSTM (`targets/executorch/recurrent.py`, the route edgekit takes, recorded as",
    "  `target_details.lowering.route`): the input projection of all steps in one matmul per direction,",
    "  both directions in one `bmm` per step, gates reordered offline so that one sigmoid and one tanh",
    "  cover them: 14 nodes per step, the same weights (the file does not grow), fully delegated but one",
    "  `flip` (the backward direction's time-reversed input). GRU and tanh/ReLU RNN layers take the same",
    "  route (GRU gates r, z, n with `b_hn` kept inside `r * (W_hn h + b_hn)`, as PyTorch computes it):",
    "  a 2-layer BiGRU 5 -> 8 over 7 steps unrolls to 275 nodes against 561 for PyTorch's decomposition,",
    "  a 2-layer BiRNN to 93 against 169, equal to eager within 1e-6 (tests/targets/test_families_lstm.py).",
    "  Static int8 packs them before annotation too: the input projections become int8 linears, the",
    "  recurrent bmm stays float32 (one int8 linear per direction and step was tried: every step stored",
    "  its own copy of the int8 weight, a 16-step BiGRU's .pte grew to 118 KB against 76 KB at float32).",
    "- a `torch.ops.higher_order.scan` loop: executorch 1.5.1 exports, lowers and runs it, and its",
    "  conversion does not grow with the step count; XNNPACK does not partition inside the loop body, so",
    "  the recurrence runs on portable kernels (its latency above).",
    "- partial delegation (recurrent part left to portable kernels): not measured separately; it saves",
    "  XNNPACK's preprocess of the unrolled cells but keeps the edge passes over all of them, and pays",
    "  portable kernels at run time as the scan row does.",
]


def render_matrix(data: dict) -> list[str]:
    cells = data.get("cells") or {}
    if not cells:
        return []
    lines = [
        "### Family x target x precision",
        "",
        f"`{data['command']}` (each cell one `edgekit.convert`, one target and precision, imports warm; "
        "verification on real inputs: photos, fortunes sentences, digit-string images, decode steps). "
        "Delegated = ExecuTorch nodes inside a delegate. Cells that are not `passed` are explained below each table "
        "(edgekit's own verdict, verbatim). Top-1 is judged on the inputs where FP32 is confident when there are "
        "at least 10 of them (edgekit.verify), else on all inputs: `1.000 (24c/200)` = agreement on 24 confident "
        "inputs of 200. Each family is verified on enough inputs for that (`EVAL_SAMPLES` in benchmarks/families.py, "
        "counted by `python -m benchmarks.families confident`); cells without `(..c/..)` come from earlier runs on "
        "8 inputs, where one hesitant flip is top-1 0.875.",
        "",
    ]
    if data.get("runs"):
        lines += ["Runs that wrote the cells below (a later run replaces the cells it covers):", ""]
        lines += [f"- `{run}`" for run in data["runs"]] + [""]
    families = [f for f in FAMILY_ORDER if any(k.startswith(f + "|") for k in cells)]
    for family in families:
        lines += [f"#### {data.get('titles', {}).get(family, family)}", "",
                  "| target | precision | status | cosine | top-1 | size | time | delegated | route |",
                  "|---|---|---|---|---|---|---|---|---|"]
        notes = []
        for target in TARGET_ORDER:
            for precision in PRECISION_ORDER:
                cell = cells.get(f"{family}|{target}|{precision}")
                if cell is None:
                    continue
                delegated = f"{cell['delegated_percent']}%" if cell.get("delegated_percent") is not None else "-"
                route = cell.get("route")
                route = route if isinstance(route, str) else (route or {}).get("frontend", "-") if route else "-"
                top1 = _num(cell.get("top1"), ".3f")
                if cell.get("top1") is not None and cell.get("eval_samples") and cell.get("confident_samples") is not None:
                    top1 += f" ({cell['confident_samples']}c/{cell['eval_samples']})"
                lines.append(f"| {target} | {precision} | {cell['status']} | {_num(cell.get('cosine'), '.6f')} | "
                             f"{top1} | {_size(cell.get('bytes'))} | {cell['seconds']:.1f} s | "
                             f"{delegated} | {route} |")
                if cell["status"] != "passed":
                    why = cell.get("error") or "; ".join(cell.get("reasons") or []) or "no reason recorded"
                    notes.append(f"- {target} {precision}: {why}")
        lines += [""] + notes + ([""] if notes else [])
        extra = (data.get("notes") or {}).get(family)  # written by hand into the JSON: measurements beside the cells
        if extra:
            lines += list(extra) + [""]
    return lines


def render(lstm: dict, matrix: dict) -> str:
    lines = ["## Model families on every target (issue 13)", ""]
    lines += render_lstm(lstm)
    lines += render_matrix(matrix)
    return "\n".join(lines).rstrip() + "\n"
