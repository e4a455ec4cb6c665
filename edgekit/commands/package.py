"""edgekit package --app android|ios ARTIFACT...: artifacts + manifests + models.json into a sample app."""
from __future__ import annotations

import json

from edgekit.cli import add_common


def add_parser(sub) -> None:
    p = sub.add_parser("package", help="put artifacts into the Android or iOS sample app and print the build and run commands")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="artifacts written by edgekit convert (their manifests beside them)")
    p.add_argument("--app", required=True, choices=("android", "ios"), help="which sample app")
    p.add_argument("--app-dir", metavar="DIR", help="the app folder (default: sample_apps/<app> of this edgekit checkout)")
    p.add_argument("--vocab", metavar="FILE", help="WordPiece vocab.txt for text models (one token per line)")
    p.add_argument("--allow-failed", action="store_true", help="package artifacts that failed verification")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_common(p)


def run(args) -> int:
    from edgekit.package import package
    from edgekit.ui import human_size, table

    result = package(args.artifacts, args.app, args.app_dir, vocab=args.vocab, allow_failed=args.allow_failed)
    if args.json:
        print(json.dumps({
            "app": result.app,
            "app_dir": str(result.app_dir),
            "model_info": str(result.model_info_path),
            "models": [{k: m.entry[k] for k in ("id", "file", "runtime", "task", "precision", "status")} for m in result.models],
            "commands": result.commands,
            "warnings": result.warnings,
        }, indent=2))
        return 0
    for warning in result.warnings:
        print(f"warning: {warning}")
    rows = [[m.entry["file"], m.entry["runtime"], m.entry["task"], m.entry["precision"] or "-",
             human_size(m.entry["size_bytes"]), m.entry["status"]] for m in result.models]
    print(f"packaged {len(rows)} model(s) into {result.models_dir}")
    print(table(["artifact", "runtime", "demo", "precision", "size", "verified"], rows))
    print(f"model info: {result.model_info_path}")
    print("\nbuild, install and benchmark:")
    for command in result.commands:
        print(f"  {command}")
    return 0
