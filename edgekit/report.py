"""Render convert results as the table people read (JSON output is Artifact.to_json).

The top-1 cell says which agreement it is: ``(c)`` on the inputs where FP32 is confident (what the
tolerance enforces when there are enough of them), ``(a)`` on all inputs (the fallback), ``(i)``
informational (random inputs, or no output holds class scores). Per-output facts that change what
the row means (roles other than the obvious, NaN/Inf, stateful steps) follow in one note per artifact.
"""
from __future__ import annotations

from edgekit.quantize.coverage import summary_cell
from edgekit.ui import fmt, human_size, table

_LEGEND = {
    "(c)": "(c) top-1 agreement on the inputs where FP32 is confident (enforced)",
    "(a)": "(a) top-1 agreement on all inputs (enforced: too few confident inputs)",
    "(i)": "(i) top-1 reported, not enforced (random inputs, or no output holds class scores)",
}


def top1_cell(parity: dict) -> str:
    if parity.get("top1") is not None:
        mark = {"confident": "(c)", "all": "(a)"}.get(parity.get("enforced"), "(i)")
        return f"{parity['top1']:.3f} {mark}"
    informational = [o.get("top1_all") for o in parity.get("outputs") or [] if o.get("top1_all") is not None]
    return f"{min(informational):.3f} (i)" if informational else "-"


def output_notes(parity: dict) -> list[str]:
    """Short facts per output: role where it is not plain class scores, NaN/Inf, top-1 on both bases."""
    notes = []
    outputs = parity.get("outputs") or []
    carried = {p["output"] for p in parity.get("state") or []}  # said once, in the state line
    for out in outputs:
        bits = []
        role = out.get("role")
        if role and (role != "class_scores" or len(outputs) > 1) and out.get("name") not in carried:
            bits.append(role)
        if out.get("top1_all") is not None and role == "class_scores":
            bits.append(f"top-1 {fmt(out.get('top1_confident'), '.3f')} on {out.get('confident_samples')} confident, "
                        f"{out['top1_all']:.3f} on all {out.get('rows')}")
        if role == "regression" and out.get("max_rel") is not None:
            bits.append(f"max_abs {fmt(out.get('max_abs'), '.3g')}, rel {fmt(out.get('max_rel'), '.3g')}")
        nonfinite = out.get("nonfinite") or {}
        if (nonfinite.get("reference") or nonfinite.get("artifact")) and not nonfinite.get("mismatched"):
            # a mismatch is a failure reason, printed with the reasons; here only the model's own NaN/Inf
            bits.append(f"NaN/Inf {nonfinite.get('reference')} in the original, the same in the artifact")
        if bits and (role != "class_scores" or len(bits) > 1 or len(outputs) > 1):
            notes.append(f"{out.get('name')}: " + ", ".join(bits))
    stateful = parity.get("stateful")
    if stateful:
        pairs = ", ".join(f"{p['output']}->{p['input']}" for p in parity.get("state") or [])
        worst = next((s for s in stateful["per_step"] if s["step"] == stateful["worst_step"]), {})
        notes.append(f"state {pairs}: {stateful['sequences']} sequences x {stateful['steps']} steps, worst step "
                     f"{stateful['worst_step']} (cosine {fmt(worst.get('cosine'), '.6f')})")
    return notes


def mixed_note(block: dict | None) -> str | None:
    """One line when automatic mixed precision searched: what it kept, or the best it found."""
    mixed = (block or {}).get("mixed_precision") or {}
    if not mixed.get("searched"):
        return None
    final = mixed.get("final") or {}
    score = f"cosine {fmt(final.get('cosine'), '.6f')}" + (f", top-1 {final['top1']:.3f}" if final.get("top1") is not None else "")
    layers = ", ".join(k.get("module_path") or k.get("node") for k in mixed.get("kept") or [])
    if mixed.get("shipped") == "mixed":
        kept = mixed["kept"]
        how = sorted({k.get("precision") or "float" for k in kept})  # TFLite may realise a kept layer at int16x8
        return (f"mixed precision kept {len(kept)} layer{'s' if len(kept) != 1 else ''} {' / '.join(how)} ({layers}; "
                f"{100 * mixed.get('weight_share', 0):.1f}% of weights) for {score} on {mixed.get('heldout_samples')} held-back samples")
    return (f"mixed precision found no mix within the budget that meets the tolerance; best: {layers or 'none'} float, "
            f"{score} (manifest: quantization.mixed_precision)")


def render_convert(artifacts) -> str:
    rows = []
    notes = []
    for art in artifacts:
        parity = art.parity or {}
        data = "real" if parity.get("real_inputs") else ("random*" if parity.get("samples") else "-")
        rows.append(
            [
                art.target,
                art.precision,
                human_size(art.size_bytes),
                fmt(parity.get("cosine"), ".6f"),
                top1_cell(parity),
                data,
                summary_cell((getattr(art, "manifest", None) or {}).get("quantization")),
                art.status.upper() if art.status in ("failed", "error") else art.status,
                art.path or art.error,
            ]
        )
        mixed = mixed_note((getattr(art, "manifest", None) or {}).get("quantization"))
        if mixed:
            notes.append(f"{art.target} [{art.precision}]: {mixed}")
        details = output_notes(parity) if parity.get("outputs") else []
        if details:
            notes.append(f"{art.target} [{art.precision}]: " + "; ".join(details))
        # a target that verifies with a reference implementation instead of its runtime says so (Core ML off macOS)
        verification = ((getattr(art, "manifest", None) or {}).get("target_details") or {}).get("verification") or {}
        if verification.get("reference") and art.status in ("passed", "failed"):
            notes.append(f"{art.target} [{art.precision}]: verified by {verification['summary']}")
        if art.status in ("failed", "unverified") and parity.get("reasons"):
            notes.append(f"{art.target} [{art.precision}]: " + "; ".join(parity["reasons"]))
    text = table(["target", "precision", "size", "cosine", "top-1", "inputs", "quantized", "status", "artifact"], rows)
    for mark, line in _LEGEND.items():
        if any(r[4].endswith(mark) for r in rows):
            notes.append(line)
    if any(r[5] == "random*" for r in rows):
        notes.append("* verified on seeded random inputs: pass --eval-data (or --calibration) for a check on real data")
    return text + ("\n" + "\n".join(notes) if notes else "")
