"""edgekit convert: model file -> verified artifacts for one or more targets."""
from __future__ import annotations

import json
import shlex
import sys

from edgekit.constants import DEFAULT_TARGET
from edgekit.cli import add_common
from edgekit.errors import EXIT_OK, EXIT_VERIFY_FAILED, UsageError
from edgekit.quantize.config import CALIBRATIONS
from edgekit.options import IO_TYPES, PRECISIONS, DynamicAxis
from edgekit.registry import targets, get_target_class
from edgekit.verify_roles import parse_assignments, parse_state


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"expected comma-separated numbers, got {text!r}") from None


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        size = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        raise UsageError(f"--image-size {text!r}: expected N or HxW") from None
    if len(parts) > 2 or not all(1 <= d <= 65536 for d in size):
        raise UsageError(f"--image-size {text!r}: expected N or HxW with sides from 1 to 65536")
    return size


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert a model to TFLite / Core ML / ExecuTorch / ONNX, verified")
    p.add_argument("model", nargs="?", help="model file: TorchScript, ExportedProgram (.pt2), state_dict, or pickle")
    p.add_argument("-t", "--target", action="append", help=f"target (repeatable, or 'all'): {', '.join(targets())}; default {DEFAULT_TARGET}")
    p.add_argument("-i", "--input", action="append", default=[], metavar="NAME:SHAPE[:DTYPE]",
                   help="model input, e.g. x:1x3x224x224 (repeatable; taken from a .pt2's example inputs when omitted)")
    p.add_argument("--quantize", metavar="PRECISION", help=f"one of {', '.join(PRECISIONS)}; default: the target's own")
    p.add_argument("--calibration", metavar="PATH", help=".npz/.npy, image folder, module:function, or 'random'")
    p.add_argument("--calibration-samples", type=int, default=100, metavar="N")
    p.add_argument("--int8-calibration", choices=CALIBRATIONS, default="auto",
                   help="--quantize int8 calibration: auto (default: try the candidate recipes, keep the one that agrees "
                   "best with the float model on held-back calibration samples), one observer, or one algorithm "
                   "(cle, bias-correction, smoothquant, adaround: learned weight rounding, minutes on a CPU)")
    p.add_argument("--mixed-precision", default="auto", metavar="auto|off|weights=W,flops=F",
                   help="--quantize int8: when int8 misses the tolerance on held-back calibration samples, keep the "
                   "fewest layers float that meet it (auto, default: at most 6.7%% of weights and 10%% of FLOPs float); "
                   "off, or your own budget as shares")
    p.add_argument("--eval-data", metavar="PATH", help="inputs for verification (same formats as --calibration)")
    p.add_argument("--eval-samples", type=int, default=None, metavar="N",
                   help="verification samples (default: all of --eval-data, else 32 held-back or random)")
    p.add_argument("--io", choices=IO_TYPES, default="float", help="model input/output type (int8 needs --quantize int8)")
    p.add_argument("--tolerance", metavar="SPEC",
                   help="cosine threshold, or cosine=..,top1=..,max_abs=..,max_rel=..; per output NAME:KEY=.. (logits:top1=0.99)")
    p.add_argument("--output-role", action="append", default=[], metavar="NAME=ROLE",
                   help="how an output is verified: class_scores (top-1), regression, state, embedding, other (default: detected)")
    p.add_argument("--state", action="append", default=[], metavar="OUT=IN",
                   help="output OUT is the state input IN takes at the next step (default: detected; 'none' turns it off)")
    p.add_argument("--state-steps", type=int, default=8, metavar="N", help="steps per sequence when verifying state (default 8)")
    p.add_argument("--no-verify", action="store_true", help="skip verification (status 'skipped')")
    p.add_argument("--strict", action="store_true", help="an unverified artifact is an error (exit 1)")
    p.add_argument("--decoder", nargs="?", const="auto", metavar="token=NAME,pos=NAME,logits=NAME",
                   help="the model is one decoding step with its cache as inputs/outputs: also verify greedy "
                   "generation token by token (exact at float32) and record it for bench's tokens/s (roles detected "
                   "when not named)")
    p.add_argument("--dynamic", action="append", default=[], metavar="NAME:AXIS[:MIN-MAX]", help="a dynamic input axis")
    p.add_argument("--image-size", metavar="HxW", help="resize images of an image-folder dataset")
    p.add_argument("--mean", metavar="M[,M,M]", help="per-channel mean (after scaling pixels to 0..1)")
    p.add_argument("--std", metavar="S[,S,S]", help="per-channel std (after scaling pixels to 0..1)")
    p.add_argument("--color-layout", choices=("RGB", "BGR"), default="RGB")
    p.add_argument("--labels", metavar="FILE", help="class labels, one per line (recorded in the manifest)")
    p.add_argument("--arch", metavar="MODULE:FACTORY", help="builds the nn.Module for a state_dict file")
    p.add_argument("--model", dest="model_factory", metavar="MODULE:FACTORY", help="build the model from code, no file")
    p.add_argument("--trust-pickle", action="store_true", help="allow a fully pickled module (can run arbitrary code)")
    p.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: current)")
    p.add_argument("--name", help="artifact base name (default: the model file's stem)")
    p.add_argument("--overwrite", action="store_true", help="replace existing artifacts")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads for verification")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of the table")
    for name in targets():
        cls = get_target_class(name)
        group = p.add_argument_group(f"{name} options")
        cls.add_arguments(group)
    add_common(p)


def _labels(path: str | None):
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            labels = tuple(line.strip() for line in fh if line.strip())
    except OSError as exc:
        raise UsageError(f"--labels {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--labels {path}: not a UTF-8 text file (one label per line)") from None
    if not labels:
        raise UsageError(f"--labels {path}: the file holds no labels")
    return labels


def options_from_args(args) -> dict:
    """ConvertOptions fields from parsed args (shared with `edgekit run`)."""
    target_options = {}
    for name in targets():
        values = get_target_class(name).options_from_args(args)
        if values:
            target_options[name] = values
    return dict(
        _same(args, "io", "calibration_samples", "eval_data", "eval_samples", "color_layout", "tolerance", "state_steps",
              "strict", "decoder", "threads", "seed", "name", "overwrite"),
        int8_calibration=getattr(args, "int8_calibration", "auto"),
        mixed_precision=getattr(args, "mixed_precision", "auto"),
        image_size=_size(args.image_size) if args.image_size else None,
        mean=_floats(args.mean) if args.mean else None,
        std=_floats(args.std) if args.std else None,
        labels=_labels(args.labels),
        output_roles=parse_assignments(args.output_role, "--output-role"),
        state=parse_state(args.state),
        verify=not args.no_verify,
        dynamic=tuple(DynamicAxis.parse(d) for d in args.dynamic),
        output_dir=args.output,
        target_options=target_options,
        command_line="edgekit " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )


def _same(args, *names: str) -> dict:
    """Flags whose parsed value is the ConvertOptions field of the same name, as they are."""
    return {name: getattr(args, name) for name in names}


def exit_code(artifacts, strict: bool) -> int:
    for art in artifacts:
        if art.status == "error":
            return art.exit_code
        if art.status == "failed" or (strict and art.status == "unverified"):
            return EXIT_VERIFY_FAILED
    return EXIT_OK


def run(args) -> int:
    from edgekit.pipeline import convert
    from edgekit.report import render_convert
    from edgekit.ui import Reporter, stdout_reserved

    reporter = Reporter(quiet=args.quiet or args.json, verbose=args.verbose)
    with stdout_reserved(args.json):
        artifacts = _convert(convert, args, reporter)
    if args.json:
        print(json.dumps({"artifacts": [a.to_json() for a in artifacts]}, indent=2))
    else:
        print(render_convert(artifacts))
    return exit_code(artifacts, args.strict)


def _convert(convert, args, reporter):
    return convert(
        args.model,
        target=args.target or [DEFAULT_TARGET],
        inputs=args.input,
        reporter=reporter,
        **_same(args, "quantize", "calibration", "arch", "model_factory", "trust_pickle"),
        **options_from_args(args),
    )
