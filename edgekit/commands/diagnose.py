"""edgekit diagnose MODEL --quantize int8 --calibration DATA: which layers lose int8 accuracy, and
what each remedy (keep in float, int16 activations, another observer) wins end to end."""
from __future__ import annotations

import html
import json
import os

from edgekit.cli import add_common
from edgekit.errors import OutputError, UsageError
from edgekit.quantize.config import CALIBRATIONS  # the same choice as convert's (plain dataclasses, no ML import)

_DIAGNOSABLE = ("int8",)


def add_parser(sub) -> None:
    p = sub.add_parser("diagnose", help="per-layer int8 error (SNR, cosine), ranked, with what each remedy wins")
    p.add_argument("model", nargs="?", help="model file: TorchScript, ExportedProgram (.pt2), state_dict, or pickle")
    p.add_argument("-i", "--input", action="append", default=[], metavar="NAME:SHAPE[:DTYPE]",
                   help="model input, e.g. x:1x3x224x224 (repeatable; taken from a .pt2's example inputs when omitted)")
    p.add_argument("--quantize", default="int8", metavar="PRECISION", help="precision to diagnose: int8 (static, calibrated)")
    p.add_argument("--calibration", metavar="PATH", help=".npz/.npy, image folder, module:function, or 'random'")
    p.add_argument("--calibration-samples", type=int, default=100, metavar="N")
    p.add_argument("--eval-data", metavar="PATH", help="held-out inputs the errors are measured on (default: a held-back part of --calibration)")
    p.add_argument("--eval-samples", type=int, default=64, metavar="N")
    p.add_argument("--int8-calibration", default="auto", metavar="NAME",
                   help=f"activation observer or calibration algorithm, as for convert: {', '.join(CALIBRATIONS)}")
    p.add_argument("--tolerance", metavar="SPEC", help="cosine threshold, or cosine=..,top1=..: what 'passed' means")
    p.add_argument("--top", type=int, default=15, metavar="N", help="layers in the console table (default 15)")
    p.add_argument("--layer-samples", type=int, default=16, metavar="N", help="evaluation samples for the per-layer errors")
    p.add_argument("--remedies", type=int, default=8, metavar="N", help="top-ranked layers whose remedies are measured end to end")
    p.add_argument("--json", dest="json_path", metavar="PATH", help="write the diagnosis as JSON ('-': stdout)")
    p.add_argument("--html", dest="html_path", metavar="PATH", help="write a self-contained HTML page with a per-layer plot")
    p.add_argument("--model-explorer", dest="explorer_path", metavar="PATH",
                   help="write Model Explorer node data (layer-local SNR per node) and the ExportedProgram beside it (.pt2)")
    p.add_argument("--image-size", metavar="HxW", help="resize images of an image-folder dataset")
    p.add_argument("--mean", metavar="M[,M,M]", help="per-channel mean (after scaling pixels to 0..1)")
    p.add_argument("--std", metavar="S[,S,S]", help="per-channel std (after scaling pixels to 0..1)")
    p.add_argument("--color-layout", choices=("RGB", "BGR"), default="RGB")
    p.add_argument("--arch", metavar="MODULE:FACTORY", help="builds the nn.Module for a state_dict file")
    p.add_argument("--model", dest="model_factory", metavar="MODULE:FACTORY", help="build the model from code, no file")
    p.add_argument("--trust-pickle", action="store_true", help="allow a fully pickled module (can run arbitrary code)")
    p.add_argument("--seed", type=int, default=0)
    add_common(p)


def _check(args) -> None:
    if args.quantize not in _DIAGNOSABLE:
        raise UsageError(f"diagnose explains static int8; --quantize {args.quantize!r} is not diagnosable (use --quantize int8)")
    if args.int8_calibration not in CALIBRATIONS:
        raise UsageError(f"--int8-calibration {args.int8_calibration!r}: choose one of {', '.join(CALIBRATIONS)}")
    if args.calibration is None:
        raise UsageError("diagnose needs --calibration PATH (.npz, .npy, image folder or module:function)")
    for flag in ("top", "layer_samples", "calibration_samples", "eval_samples"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.remedies < 0:
        raise UsageError("--remedies must be 0 or more")
    for path in (args.json_path, args.html_path, args.explorer_path):
        if path and path != "-" and os.path.isdir(path):
            raise UsageError(f"{path} is a folder; give a file path")


def run(args) -> int:
    _check(args)
    from edgekit.ui import Reporter

    to_stdout = args.json_path == "-"
    reporter = Reporter(quiet=args.quiet or to_stdout, verbose=args.verbose)
    diagnosis, exported = _diagnose(args, reporter)
    doc = diagnosis.to_json()
    if to_stdout:
        print(json.dumps(doc, indent=2))
    else:
        print(render_table(diagnosis, args.top))
    if args.json_path and not to_stdout:
        _write(args.json_path, json.dumps(doc, indent=2))
    if args.html_path:
        _write(args.html_path, render_html(diagnosis))
    if args.explorer_path:
        _write(args.explorer_path, json.dumps(diagnosis.model_explorer(), indent=1))
        _save_program(exported, os.path.splitext(args.explorer_path)[0] + ".pt2")
    for path in (args.json_path, args.html_path, args.explorer_path):
        if path and path != "-":
            reporter.info(f"wrote {path}")
    return 0


def _diagnose(args, reporter):
    from edgekit.data import Samples, load_samples, split_holdout
    from edgekit.export import prepare
    from edgekit.loading import load_model
    from edgekit.options import InputSpec, Tolerance, get_precision
    from edgekit.quantize import QuantConfig
    from edgekit.quantize.diagnose import diagnose

    from edgekit.commands.convert import _floats, _size

    tolerance = get_precision("int8").tolerance
    if args.tolerance:
        tolerance = Tolerance.parse(args.tolerance, tolerance)
    with reporter.stage("load"):
        loaded = load_model(args.model, arch=args.arch, model=args.model_factory, trust_pickle=args.trust_pickle)
    for warning in loaded.warnings:
        reporter.warn(warning)
    with reporter.stage("export"):
        model = prepare(loaded, [InputSpec.parse(s) for s in args.input], (), args.seed)
        exported = model.exported_program()
    kwargs = dict(image_size=_size(args.image_size) if args.image_size else None, mean=_floats(args.mean) if args.mean else None,
                  std=_floats(args.std) if args.std else None, color_layout=args.color_layout, seed=args.seed)
    extra = 0 if args.eval_data else args.eval_samples
    data = load_samples(args.calibration, model.inputs, limit=args.calibration_samples + extra, **kwargs)
    if args.eval_data:
        calibration = Samples(data.samples[: args.calibration_samples], data.source, data.real)
        evaluation = load_samples(args.eval_data, model.inputs, limit=args.eval_samples, flag="--eval-data", **kwargs)
    else:
        calibration, evaluation = split_holdout(data, args.calibration_samples)
        if evaluation is None:
            raise UsageError("--calibration holds one sample: pass --eval-data (errors are measured on held-out inputs)")
    if not evaluation.real:
        reporter.warn("measuring on random inputs: pass --eval-data with real inputs for a ranking that means something")
    diagnosis = diagnose(
        exported, calibration.samples, evaluation.samples, tolerance, real_inputs=evaluation.real,
        config=QuantConfig(observer=args.int8_calibration, seed=args.seed), layer_samples=args.layer_samples,
        remedy_layers=args.remedies, reporter=reporter,
    )
    diagnosis.model = {"source": loaded.source, "form": loaded.form, "inputs": [s.to_dict() for s in model.inputs]}
    diagnosis.calibration = calibration.describe()
    diagnosis.evaluation = evaluation.describe()
    return diagnosis, exported


def _write(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _save_program(exported, path: str) -> None:
    import torch

    try:
        torch.export.save(exported, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- rendering --------------------------------------------------------------------------------------

def _db(value) -> str:
    if value is None:
        return "-"
    return "inf" if value >= 999 else f"{value:.1f}"


def _win(remedy: dict | None) -> str:
    if not remedy:
        return "-"
    text = f"{remedy['snr_gain_db']:+.1f} dB"
    if remedy.get("top1_gain") is not None:
        text += f" {remedy['top1_gain']:+.3f}"
    return text


def _score(s: dict) -> str:
    top1 = "" if s.get("top1") is None else f", top-1 {s['top1']:.3f}"
    return f"cosine {s['cosine']:.5f}, SNR {_db(s['snr_db'])} dB{top1}"


def render_table(diagnosis, top: int) -> str:
    from edgekit.ui import table

    doc = diagnosis.to_json()
    rows = []
    for layer in doc["layers"][:top]:
        r = layer["remedies"]
        rows.append([
            layer["rank"], f"{layer['module_path'] or '<root>'} ({layer['module_type']})", layer["node"],
            _db(layer["local_snr_db"]), f"{layer['local_cosine']:.5f}", _db(layer["propagated_snr_db"]),
            f"{layer['propagated_cosine']:.5f}", _db(layer["solo_output_snr_db"]),
            _win(r.get("float")), _win(r.get("int16")), _win(r.get("observer")),
        ])
    base = doc["baseline"]
    lines = [
        f"int8 ({doc['quantization'].get('chosen', '?')} observer) vs float on {doc['evaluation']['samples']} samples: "
        f"{_score(base)} -> {'meets' if base['passed'] else 'misses'} the tolerance",
        "",
        table(["rank", "layer", "node", "local dB", "local cos", "prop. dB", "prop. cos", "alone dB",
               "float wins", "int16 wins", f"{doc['remedies']['observer'].split()[0]} wins"], rows),
        "",
        "local: the layer alone quantized on float inputs; prop.: the fully int8 model at that point; alone: model "
        "output SNR with only this layer quantized (the ranking). wins: end-to-end SNR (and top-1) change when only "
        f"that layer is kept in float / gets int16 activations (TFLite 16x8 only) / another observer "
        f"(measured for the top {doc['remedy_layers']}).",
    ]
    for k, s in doc["keep_float_top"].items():
        lines.append(f"top {k} kept in float: {_score(s)} ({s['snr_gain_db']:+.1f} dB)")
    if len(doc["layers"]) > top:
        lines.append(f"{len(doc['layers']) - top} more layers in --json / --html")
    return "\n".join(lines)


def _svg(layers: list[dict]) -> str:
    """Per-layer SNR in graph order: bars = layer-local, line = propagated; the top 5 labelled."""
    order = sorted(layers, key=lambda l: l["graph_index"])
    width, height, pad = max(600, 14 * len(order) + 80), 320, 50
    values = [v for l in order for v in (l["local_snr_db"], l["propagated_snr_db"]) if v is not None and abs(v) < 999]
    top = max(values + [1.0])
    step = (width - 2 * pad) / max(len(order), 1)

    def y(v):
        v = top if v is None or v >= 999 else max(v, 0.0)
        return height - pad - (height - 2 * pad) * v / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="10">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#444"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#444"/>']
    for tick in range(0, int(top) + 1, max(5, int(top) // 6 or 1)):
        parts.append(f'<text x="{pad - 6}" y="{y(tick) + 3:.1f}" text-anchor="end">{tick}</text>')
    for i, layer in enumerate(order):
        x = pad + i * step
        colour = "#d7301f" if layer["rank"] <= 5 else "#9ecae1"
        title = html.escape(f"#{layer['rank']} {layer['module_path'] or '<root>'} ({layer['node']}): local {_db(layer['local_snr_db'])} dB, "
                            f"propagated {_db(layer['propagated_snr_db'])} dB")
        parts.append(f'<rect x="{x + 1:.1f}" y="{y(layer["local_snr_db"]):.1f}" width="{max(step - 2, 1):.1f}" '
                     f'height="{height - pad - y(layer["local_snr_db"]):.1f}" fill="{colour}"><title>{title}</title></rect>')
        if layer["rank"] <= 5:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{y(layer["local_snr_db"]) - 4:.1f}" text-anchor="middle">#{layer["rank"]}</text>')
    points = " ".join(f"{pad + (i + 0.5) * step:.1f},{y(l['propagated_snr_db']):.1f}" for i, l in enumerate(order))
    parts.append(f'<polyline points="{points}" fill="none" stroke="#333" stroke-width="1.5"/>')
    parts.append(f'<text x="{width / 2:.0f}" y="{height - 15}" text-anchor="middle">layers in graph order '
                 '(bars: layer-local SNR, red = top 5 ranked; line: propagated SNR)</text>')
    parts.append(f'<text x="12" y="{height / 2:.0f}" transform="rotate(-90 12 {height / 2:.0f})" text-anchor="middle">SNR (dB)</text>')
    return "\n".join(parts + ["</svg>"])


def render_html(diagnosis) -> str:
    doc = diagnosis.to_json()
    head = ["rank", "layer", "node", "op", "local SNR dB", "local cos", "propagated SNR dB", "propagated cos",
            "alone: output SNR dB", "float wins", "int16 wins", "observer wins"]
    body = []
    for layer in doc["layers"]:
        r = layer["remedies"]
        cells = [layer["rank"], f"{layer['module_path'] or '<root>'} ({layer['module_type']})", layer["node"], layer["op"],
                 _db(layer["local_snr_db"]), f"{layer['local_cosine']:.5f}", _db(layer["propagated_snr_db"]),
                 f"{layer['propagated_cosine']:.5f}", _db(layer["solo_output_snr_db"]),
                 _win(r.get("float")), _win(r.get("int16")), _win(r.get("observer"))]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    keep = "".join(f"<li>top {html.escape(k)} kept in float: {html.escape(_score(s))}</li>" for k, s in doc["keep_float_top"].items())
    raw = json.dumps(doc).replace("</", "<\\/")
    title = f"edgekit diagnose: {doc['model'].get('source', 'model')}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: right; }}
td:nth-child(2), td:nth-child(3), td:nth-child(4), th {{ text-align: left; }} .meta {{ color: #555; }}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>int8 vs float on {doc['evaluation']['samples']} held-out samples: {html.escape(_score(doc['baseline']))}
({'meets' if doc['baseline']['passed'] else 'misses'} the tolerance cosine {doc['tolerance']['cosine']}, top-1 {doc['tolerance']['top1']}).</p>
<ul>{keep}</ul>
<figure>{_svg(doc['layers'])}</figure>
<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>
{chr(10).join(body)}
</table>
<p class="meta">Ranking: {html.escape(doc['ranking'])}. Wins: change of end-to-end SNR (dB) and top-1 agreement when only that
layer is kept in float, gets int16 activations (TFLite 16x8 only), or the {html.escape(diagnosis.alternative_observer)} observer.</p>
<script type="application/json" id="diagnosis">{raw}</script>
</body></html>
"""
