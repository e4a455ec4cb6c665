"""edgekit inspect ARTIFACT: inputs and outputs, op histogram, quantized tensors, size, manifest status."""
from __future__ import annotations

import json
import os

from edgekit.cli import add_common
from edgekit.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="show an artifact's I/O, op histogram, quantized tensors and size")
    p.add_argument("artifact")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_common(p)


def run(args) -> int:
    from edgekit import manifest as manifest_mod
    from edgekit.registry import target_for_artifact
    from edgekit.ui import human_size, table

    if not os.path.exists(args.artifact):
        raise UsageError(f"{args.artifact}: no such file")
    target = target_for_artifact(args.artifact)
    target.require()
    info = read_artifact(target, args.artifact)
    if manifest_mod.manifest_path(args.artifact).exists():
        info["manifest"] = _manifest_summary(manifest_mod, args.artifact)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{args.artifact}  ({info['target']}, {human_size(info['size_bytes'])})")
    io_rows = [["input", s["name"], "x".join(map(str, s["shape"])), s["dtype"], _q(s)] for s in info["inputs"]]
    io_rows += [["output", s["name"], "x".join(map(str, s["shape"])), s["dtype"], _q(s)] for s in info["outputs"]]
    print(table(["", "name", "shape", "dtype", "quantization"], io_rows))
    print()
    print(table(["op", "count"], sorted(info["ops"].items(), key=lambda kv: -kv[1])))
    extra = info.get("summary") or {}
    for key, value in extra.items():
        print(f"{key}: {value}")
    quantized = info.get("quantized_tensors", [])
    print(f"\nquantized tensors: {len(quantized)}")
    for t in quantized[:20]:
        print(f"  {t['name'][:70]:70s} {t['dtype']:6s} {t.get('granularity', '')}")
    if len(quantized) > 20:
        print(f"  ... and {len(quantized) - 20} more (--json lists all)")
    if "manifest" in info:
        print()
        print("\n".join(_manifest_lines(info["manifest"])))
    return 0


def _manifest_lines(m: dict) -> list[str]:
    if "error" in m:
        return [f"manifest: {m['error']}"]
    lines = [f"manifest: precision {m['precision']}, io {m['io']}, status {m['status']}, "
             f"cosine {m['parity']['cosine']}, top-1 {m['parity']['top1']}"]
    coverage = m.get("coverage")
    if coverage and coverage.get("weights_total"):
        at = f" at {coverage['precision']}" if coverage.get("precision") else ""
        left = f"; float: {', '.join(coverage['float_ops'])}" if coverage.get("float_ops") else ""
        source = f" (counted in {coverage['source']})" if coverage.get("source") else ""
        lines.append(f"quantization coverage: {100 * coverage['weight_share']:.1f}% of weights{at} "
                     f"({coverage.get('weights_quantized')}/{coverage['weights_total']}), "
                     f"{coverage.get('ops_quantized')}/{coverage.get('ops_total')} compute ops{left}{source}")
    for link in m.get("state") or []:
        lines.append(f"state: output {link['output']} ({link['output_name']}) feeds input {link['input']} "
                     f"({link['input_name']}) at the next step")
    return lines


def read_artifact(target, path: str) -> dict:
    """``target.inspect(path)``, with a damaged file (truncated, corrupt, not what its suffix says)
    reported as one line, exit 3, whatever the target's library raised. Native readers can crash
    on garbage, so what can be checked without them (empty file, an empty package) is checked first."""
    from edgekit.errors import EdgekitError, ModelLoadError, first_line
    from edgekit.ui import captured_native_output

    name = f"{target.name} artifact"
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ModelLoadError(f"{path}: empty file, not a {name}")
    if os.path.isdir(path) and not any(os.scandir(path)):
        raise ModelLoadError(f"{path}: empty folder, not a {name}")
    log: list[str] = []
    try:
        with captured_native_output(True, log):
            return target.inspect(path)
    except UsageError as exc:  # a target that calls an unreadable file a usage error: it is the file (3)
        raise ModelLoadError(str(exc)) from exc
    except EdgekitError:
        raise
    except (Exception, SystemExit) as exc:  # the library's own words, first line only
        raise ModelLoadError(f"{path}: cannot read as a {name}, corrupt or truncated? ({first_line(exc, 200)})") from exc


def _manifest_summary(manifest_mod, artifact) -> dict:
    """The manifest facts inspect shows. A manifest this edgekit cannot read (damaged, unknown major
    version) is refused in one line, and the artifact's own facts are still shown."""
    try:
        m = manifest_mod.beside(artifact)
        return {
            "precision": m.precision, "io": m.io, "status": m.status, "flops": m.flops, "calibration": m.calibration,
            "parity": {k: (m.parity or {}).get(k) for k in ("cosine", "top1", "samples", "real_inputs")},
            "coverage": m.coverage, "state": m.state_links(),
        }
    except manifest_mod.ManifestError as exc:
        return {"error": f"{exc}; its facts are not shown"}


def _q(spec) -> str:
    q = spec.get("quantization")
    return f"scale {q['scale']:.6g}, zero point {q['zero_point']}" if q else "-"
