"""Render convert results as the table people read (JSON output is Artifact.to_json)."""
from __future__ import annotations

from edgekit.ui import fmt, human_size, table


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
                fmt(parity.get("top1"), ".3f"),
                data,
                art.status.upper() if art.status in ("failed", "error") else art.status,
                art.path or art.error,
            ]
        )
        if art.status in ("failed", "unverified") and parity.get("reasons"):
            notes.append(f"{art.target} [{art.precision}]: " + "; ".join(parity["reasons"]))
    text = table(["target", "precision", "size", "cosine", "top-1", "inputs", "status", "artifact"], rows)
    if any(r[5] == "random*" for r in rows):
        notes.append("* verified on seeded random inputs: pass --eval-data (or --calibration) for a check on real data")
    return text + ("\n" + "\n".join(notes) if notes else "")
