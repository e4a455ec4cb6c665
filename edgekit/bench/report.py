"""Bench results for people: the side-by-side terminal table and a self-contained HTML page.

The HTML page inlines its plots as SVG (matplotlib, imported only when a page is asked for) and
the raw records as JSON, so it reads offline and can be mailed as one file.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

from edgekit.errors import MissingDependencyError, OutputError, UsageError
from edgekit.ui import human_size, table


def typical_ms(record: dict) -> float | None:
    """The latency a row is compared on: p50, or the mean where a runner reports no median."""
    timings = record.get("timings_ms") or {}
    return timings.get("p50") if timings.get("p50") is not None else timings.get("mean")


def _matches(record: dict, baseline: str) -> bool:
    art = record["artifact"]
    return baseline in (art["name"], art["path"], os.path.abspath(baseline)) or Path(art["name"]).stem == baseline


def speedups(records: list[dict], baseline: str | None = None) -> list[float | None]:
    """Per record: baseline latency / its latency on the same device (>1 is faster than the baseline).
    The baseline is --baseline (a name or path) or the first artifact measured on that device."""
    if baseline and not any(_matches(r, baseline) for r in records):
        raise UsageError(f"--baseline {baseline}: not one of the measured artifacts")
    reference: dict[str, float | None] = {}
    for record in records:
        device = record["device"]["id"]
        if device in reference:
            continue
        candidates = [r for r in records if r["device"]["id"] == device and (not baseline or _matches(r, baseline))]
        ok = [r for r in candidates if r["status"] == "ok"]
        reference[device] = typical_ms(ok[0]) if ok else None
    out = []
    for record in records:
        ref, mine = reference.get(record["device"]["id"]), typical_ms(record) if record["status"] == "ok" else None
        out.append(ref / mine if ref and mine else None)
    return out


def parity_text(parity: dict | None) -> str:
    if not parity:
        return "-"
    status = parity.get("status") or "?"
    cosine = parity.get("cosine")
    return f"{status} {cosine:.4f}" if isinstance(cosine, (int, float)) else status


def _ms(value) -> str:
    return "-" if value is None else (f"{value:.3f}" if value < 100 else f"{value:.1f}")


MEMORY_LABELS = {"model-share": "model share", "load-delta": "load delta", "process-peak": "process peak",
                 "planned-arena": "arena"}


def memory_text(record: dict) -> str:
    """The record's one memory number with the name of its definition (schema.MEMORY_DEFINITIONS)."""
    from edgekit.bench.schema import memory_value

    value, definition = memory_value(record)
    return "-" if value is None else f"{human_size(value)} ({MEMORY_LABELS.get(definition, definition)})"


def interval_text(record: dict) -> str:
    rounds = record.get("rounds") or {}
    if rounds.get("ci_low_ms") is None:
        return "-"
    return f"{_ms(rounds['ci_low_ms'])}-{_ms(rounds['ci_high_ms'])} (n={rounds['count']})"


def memory_notes(records: list[dict]) -> list[str]:
    from edgekit.bench.schema import MEMORY_DEFINITIONS

    used = dict.fromkeys((r.get("memory") or {}).get("definition") for r in records)
    return [f"memory ({MEMORY_LABELS[d]}, {MEMORY_DEFINITIONS[d][0]}): {MEMORY_DEFINITIONS[d][1]}" for d in used
            if d in MEMORY_DEFINITIONS]


def state_text(record: dict) -> str:
    """The device state a number was taken under, in one line."""
    state = record.get("device_state") or {}
    parts = []
    if state.get("cpu_governor"):
        parts.append(f"governor {state['cpu_governor']}")
    if state.get("cpu_freq_mhz"):
        freqs = state["cpu_freq_mhz"]
        parts.append(f"{min(freqs)}-{max(freqs)} MHz" if min(freqs) != max(freqs) else f"{freqs[0]} MHz")
    if state.get("thermal_c"):
        parts.append("thermal " + ", ".join(f"{k} {v:.0f}C" for k, v in list(state["thermal_c"].items())[:3]))
    if state.get("thermal_state"):
        parts.append(f"thermal {state['thermal_state']}")
    for key in ("os_build", "runtime", "delegate"):
        if state.get(key):
            parts.append(str(state[key]))
    return "; ".join(parts) or "-"


def render_table(records: list[dict], baseline: str | None = None) -> str:
    """Artifacts side by side: size, p50, p90, memory, compute, parity, speed-up, status."""
    ups = speedups(records, baseline)
    rows = []
    for record, up in zip(records, ups):
        t = record.get("timings_ms") or {}
        m = record.get("memory") or {}
        c = record.get("compute") or {}
        compute = "-"
        if c.get("gflops_per_s") is not None:
            compute = f"{c['gflops_per_s']:.2f}" + (f" ({100 * c['peak_share']:.0f}%)" if c.get("peak_share") is not None else "")
        p50 = t.get("p50")
        rows.append([
            record["artifact"]["name"], record["device"]["id"], human_size(record["artifact"]["size_bytes"]),
            _ms(p50) if p50 is not None else (_ms(t.get("mean")) + "*" if t.get("mean") is not None else "-"),
            _ms(t.get("p90")), human_size(m.get("peak_rss_bytes")), memory_text(record), compute,
            parity_text(record.get("parity")), "-" if up is None else f"{up:.2f}x", record["status"],
        ])
        if any(r.get("rounds") for r in records):
            rows[-1].insert(4, interval_text(record))
    headers = ["artifact", "device", "size", "p50 ms", "p90 ms", "peak mem", "memory", "GFLOP/s (peak)", "parity",
               "speed-up", "status"]
    if any(r.get("rounds") for r in records):
        headers.insert(4, "p50 95% CI")
    text = table(headers, rows)
    notes = []
    if any(r[3].endswith("*") for r in rows):
        notes.append("* mean: this runner reports no median")
    name = baseline or "the first artifact on each device"
    notes.append(f"speed-up: latency of {name} / latency of the row (higher is faster)")
    notes += memory_notes(records)
    if any(r.get("rounds") for r in records):
        from edgekit.bench.stats import ROUNDS_METHOD

        notes.append(f"p50 95% CI: {ROUNDS_METHOD} (each round a fresh process)")
    states = dict.fromkeys(f"{r['device']['id']}: {state_text(r)}" for r in records if r["status"] == "ok")
    notes += [f"state {line}" for line in states]
    return text + "\n" + "\n".join(notes)


# -- HTML -------------------------------------------------------------------------------------------

def _svg(fig) -> str:
    import io

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inline SVG in HTML5


def _label(record: dict, several_devices: bool) -> str:
    return record["artifact"]["name"] + (f" @ {record['device']['id']}" if several_devices else "")


def plot_latency(records: list[dict], several_devices: bool):
    """One row per artifact: the per-run latencies as a box over the points (native runners: the
    summary they report, a point at p50/mean and a bar from min to max)."""
    import matplotlib.pyplot as plt

    ok = [r for r in records if r["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(ok) + 1.4))
    for i, record in enumerate(reversed(ok)):
        samples = record.get("samples_ms")
        t = record["timings_ms"]
        if samples:
            ax.boxplot([samples], positions=[i], vert=False, widths=0.5, showfliers=False)
            jitter = [(k % 7 - 3) * 0.04 for k in range(len(samples))]
            ax.scatter(samples, [i + j for j in jitter], s=4, alpha=0.35)
        else:
            lo, hi = t.get("min"), t.get("max")
            if lo is not None and hi is not None:
                ax.plot([lo, hi], [i, i], color="gray")
            ax.plot([typical_ms(record)], [i], "D")
    ax.set_yticks(range(len(ok)))
    ax.set_yticklabels([_label(r, several_devices) for r in reversed(ok)])
    # a few stalls (page faults, a scheduler hiccup) would squash every box into a line: show up to
    # twice the slowest p90 and count what lies beyond
    p90s = [r["timings_ms"].get("p90") for r in ok if r.get("samples_ms") and r["timings_ms"].get("p90")]
    label = "latency per run (ms)"
    if p90s:
        limit = max(p90s) * 2
        beyond = sum(1 for r in ok for x in (r.get("samples_ms") or []) if x > limit)
        ax.set_xlim(0, limit)
        if beyond:
            label += f"; {beyond} run(s) beyond {limit:.3g} ms not shown"
    ax.set_xlabel(label)
    ax.set_title("Latency distribution")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_tradeoff(records: list[dict], several_devices: bool):
    """Size against latency, coloured by parity cosine: one point per artifact and device."""
    import matplotlib.pyplot as plt

    ok = [r for r in records if r["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r["artifact"]["size_bytes"] / 1024 for r in ok]
    ys = [typical_ms(r) for r in ok]
    cos = [((r.get("parity") or {}).get("cosine")) for r in ok]
    has = [isinstance(c, (int, float)) for c in cos]
    known = [c for c, h in zip(cos, has) if h]
    if known:
        points = ax.scatter([x for x, h in zip(xs, has) if h], [y for y, h in zip(ys, has) if h], c=known, cmap="viridis",
                            vmin=min(known), vmax=max(max(known), min(known) + 1e-6), s=70, edgecolors="black")
        fig.colorbar(points, ax=ax, label="parity: cosine vs the original model", format="%.5f")
    if not all(has):  # no manifest, or not verified: hollow, so it is not read as a parity value
        ax.scatter([x for x, h in zip(xs, has) if not h], [y for y, h in zip(ys, has) if not h], s=70,
                   facecolors="none", edgecolors="gray", label="no parity recorded")
        ax.legend(loc="best", fontsize=8)
    ax.set_ylim(bottom=0)
    for x, y, record in zip(xs, ys, ok):
        ax.annotate(_label(record, several_devices), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("artifact size (KB)")
    ax.set_ylabel("latency p50 (ms)")
    ax.set_title("Size vs latency vs parity")
    ax.grid(alpha=0.3)
    return fig


def plot_memory(records: list[dict], several_devices: bool):
    import matplotlib.pyplot as plt

    ok = [r for r in records if r["status"] == "ok" and (r.get("memory") or {}).get("peak_rss_bytes")]
    fig, ax = plt.subplots(figsize=(8, 0.5 * max(1, len(ok)) + 1.4))
    labels = [_label(r, several_devices) for r in ok]
    peak = [r["memory"]["peak_rss_bytes"] / 2**20 for r in ok]
    model = [(r["memory"].get("model_rss_bytes") or 0) / 2**20 for r in ok]
    ax.barh(labels, peak, color="#c8d6e5", label="peak RSS")
    ax.barh(labels, model, color="#1f77b4", label="model share / load delta (see the memory column)")
    ax.set_xlabel("MB")
    ax.set_title("Memory")
    ax.legend(loc="lower right")
    ax.invert_yaxis()
    return fig


def _device_line(device: dict) -> str:
    facts = " / ".join(str(device[k]) for k in ("model", "cpu", "os") if device.get(k))
    cores = f", {device['cores']} cores" if device.get("cores") else ""
    return f"<b>{html.escape(device['id'])}</b>: {html.escape(facts + cores)}"


def render_html(records: list[dict], baseline: str | None = None, title: str = "edgekit bench") -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib (needed for --html)", "bench") from None
    from edgekit.bench.stats import ROUNDS_METHOD

    several = len({r["device"]["id"] for r in records}) > 1
    figures = []
    if any(r["status"] == "ok" for r in records):
        for plot in (plot_latency, plot_tradeoff, plot_memory):
            fig = plot(records, several)
            figures.append(_svg(fig))
            plt.close(fig)
    ups = speedups(records, baseline)
    head = ["artifact", "device", "status", "size", "p50 ms", "p50 95% CI", "p90 ms", "p99 ms", "mean ms", "peak mem",
            "memory", "GFLOP/s", "% of peak", "parity", "speed-up", "runtime", "device state"]
    body = []
    for record, up in zip(records, ups):
        t, m, c = record.get("timings_ms") or {}, record.get("memory") or {}, record.get("compute") or {}
        runtime = record.get("runtime") or {}
        cells = [
            record["artifact"]["name"], record["device"]["id"], record["status"] + (f": {record['error']}" if record.get("error") else ""),
            human_size(record["artifact"]["size_bytes"]), _ms(t.get("p50")), interval_text(record), _ms(t.get("p90")),
            _ms(t.get("p99")), _ms(t.get("mean")), human_size(m.get("peak_rss_bytes")), memory_text(record),
            "-" if c.get("gflops_per_s") is None else f"{c['gflops_per_s']:.2f}",
            "-" if c.get("peak_share") is None else f"{100 * c['peak_share']:.0f}%",
            parity_text(record.get("parity")), "-" if up is None else f"{up:.2f}x",
            " ".join(x for x in (runtime.get("name"), runtime.get("version")) if x) or "-",
            state_text(record),
        ]
        css = "" if record["status"] == "ok" else ' class="fault"'
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells) + "</tr>")
    env = records[0]["environment"] if records else {}
    settings = records[0]["settings"] if records else {}
    devices = {r["device"]["id"]: r["device"] for r in records}
    device_rows = "".join(f"<li>{_device_line(d)}</li>" for d in devices.values())
    raw = json.dumps(records).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, td:nth-child(2), td:nth-child(3), th {{ text-align: left; }}
tr.fault td {{ background: #fdecea; }}
figure {{ margin: 1.5em 0; }} svg {{ max-width: 100%; height: auto; }}
.meta {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">edgekit {html.escape(str(env.get('edgekit', '')))} &middot; {html.escape(str(env.get('timestamp', '')))} &middot;
threads {settings.get('threads')}, warm-up {settings.get('warmup')}, runs {settings.get('runs')}, inputs {html.escape(str(settings.get('inputs')))}</p>
<ul class="meta">{device_rows}</ul>
<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>
{chr(10).join(body)}
</table>
<p class="meta">speed-up: latency of {html.escape(baseline or 'the first artifact on each device')} divided by the row's (higher is faster).
{html.escape(" ".join(memory_notes(records)))} p50 95% CI: {"the " + ROUNDS_METHOD.lower() + " (--rounds)"}. % of peak: achieved GFLOP/s at p50 over this
machine's float32 GEMM peak (numpy probe, same thread count).</p>
{''.join(f'<figure>{svg}</figure>' for svg in figures)}
<script type="application/json" id="edgekit-results">{raw}</script>
</body></html>
"""


def write_html(records: list[dict], path: str, baseline: str | None = None) -> Path:
    text = render_html(records, baseline)
    destination = Path(path)
    tmp = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, destination)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {destination}: {exc.strerror or exc}") from None
    return destination
