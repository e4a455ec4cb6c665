"""edgekit package: put verified artifacts into the Android or iOS sample app.

For each artifact the app gets the artifact itself, its manifest, and one entry in the model-info
file (``models.json``) that the apps read: input and output names, shapes, dtypes, quantization,
image normalisation, labels and the demo each model drives. Everything in that entry comes from
the artifact's manifest; nothing is guessed from the model file, and the apps hold no numbers of
their own (no mean, std or labels in Kotlin or Swift).

Which app loads what is the artifact's target's own declaration (targets/base.py ``OnDevice.apps``:
app -> the runtime inside the app), found through edgekit.registry.target_for_artifact; this module
holds no table of suffixes, so a new target whose format an app loads declares it in its own package.

The copy is atomic: everything is staged in a folder beside the app's models folder and swapped
in at the end, so a failure leaves the app as it was.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgekit import __version__, manifest as manifest_mod
from edgekit.bench import launch
from edgekit.bench.launch import GRADLE_VERSION, android_bench_command, build_commands, ios_bench_command  # noqa: F401
from edgekit.errors import DataError, OutputError, UsageError
from edgekit.manifest_schema import Manifest, ManifestError, TensorEntry, find_nested

MODEL_INFO_KIND = "edgekit.model-info"
MODEL_INFO_VERSION = "1.0"
MODEL_INFO_FILE = "models.json"

# The one place the apps' defaults live: written into models.json, read by the apps.
DEFAULT_PIXEL_SCALE = 1 / 255  # pixels 0..255 -> 0..1 before mean/std
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, for 1-channel image inputs
TOP_K = 5
SPECIAL_TOKENS = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "unk": "[UNK]"}
SAMPLE_TEXTS = (
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "How do I reset my password?",
)
INTEGER_DTYPES = ("int64", "int32")
QUANTIZED_DTYPES = ("int8", "uint8")


@dataclass(frozen=True)
class AppLayout:
    """Where one sample app keeps its models and how it is recognised."""

    name: str
    models_dir: str  # relative to the app folder; the apps read MODEL_INFO_FILE from here
    markers: tuple[str, ...]  # files that prove a folder is this sample app


APPS: dict[str, AppLayout] = {
    "android": AppLayout("android", "app/src/main/assets/edgekit",
                         ("settings.gradle.kts", "app/build.gradle.kts", "gradle/libs.versions.toml")),
    "ios": AppLayout("ios", "EdgekitDemo/Models", ("project.yml", "EdgekitDemo/EdgekitDemoApp.swift")),
}

ANDROID_PACKAGE = launch.ANDROID_PACKAGE
IOS_BUNDLE_ID = launch.IOS_BUNDLE_ID
ANDROID_BENCH_DIR = launch.android_results_dir()
IOS_BENCH_DIR = launch.IOS_RESULTS_DIR


def _app_suffixes(target_cls) -> tuple[str, ...]:
    return target_cls.on_device.app_suffixes or (target_cls.suffix,)


def app_runtime(app: str, artifact: str | os.PathLike) -> str | None:
    """The runtime inside ``app`` that loads this artifact (its target's declaration), or None."""
    from edgekit.registry import target_for_artifact

    cls = type(target_for_artifact(str(artifact)))
    runtime = cls.on_device.apps.get(app)
    return runtime if runtime and cls.suffix_of(str(artifact)) in _app_suffixes(cls) else None


def app_loads(app: str, artifact: str | os.PathLike) -> tuple[bool, str]:
    """(whether the app loads the artifact, what a person calls its format)."""
    from edgekit.registry import target_for_artifact

    return app_runtime(app, artifact) is not None, target_for_artifact(str(artifact)).on_device.format_name


def describe_app_formats(app: str) -> str:
    """'Core ML (.mlpackage, .mlmodel), Core AI (.aimodel) and ExecuTorch (.pte)': what ``app`` loads."""
    parts = [f"{name} ({', '.join(suffixes)})" for name, suffixes in app_formats(app).items()]
    return " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 2 else parts)


def app_formats(app: str) -> dict[str, list[str]]:
    """Format name -> the suffixes ``app`` loads, from every registered target's declaration."""
    from edgekit.registry import get_target_class, targets

    out: dict[str, list[str]] = {}
    for name in targets():
        cls = get_target_class(name)
        if app in cls.on_device.apps:
            out.setdefault(cls.on_device.format_name, []).extend(_app_suffixes(cls))
    return out


def default_app_dir(app: str) -> Path:
    """sample_apps/<app> of the edgekit checkout this module runs from."""
    return Path(__file__).resolve().parent.parent / "sample_apps" / app


def artifact_format(path: str | os.PathLike) -> str:
    """The artifact's suffix without the dot, as its target declares it (UsageError for unknown files)."""
    from edgekit.registry import target_for_artifact

    return type(target_for_artifact(str(path))).suffix_of(str(path)).lstrip(".")


@dataclass
class PackagedModel:
    """One artifact on its way into an app: where it is, its manifest and its models.json entry."""

    source: Path
    manifest_source: Path
    manifest: Manifest
    entry: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class PackageResult:
    app: str
    app_dir: Path
    models_dir: Path
    model_info_path: Path
    models: list[PackagedModel]
    commands: list[str]
    warnings: list[str]


# --- reading and checking artifacts -------------------------------------------------------------


def read_artifact(path: str | os.PathLike, app: str, allow_failed: bool = False) -> tuple[Path, Manifest, list[str]]:
    """The artifact's manifest, after checking the app can load it and that it is the file described."""
    artifact = Path(str(path).rstrip("/"))
    fmt = artifact_format(artifact)
    loads, fmt_name = app_loads(app, artifact)
    if not loads:
        runs = describe_app_formats(app)
        other = [a for a in APPS if a != app and app_loads(a, artifact)[0]]
        hint = f"; use --app {other[0]}" if other else ""
        raise UsageError(f"{artifact}: the {app} app cannot load {fmt_name} artifacts (it runs {runs}){hint}")
    if not artifact.exists():
        raise UsageError(f"{artifact}: no such artifact")
    mpath = manifest_mod.manifest_path(artifact)
    if not mpath.exists():
        raise UsageError(f"{artifact}: no manifest beside it ({mpath.name}); package artifacts written by edgekit convert")
    try:
        doc = manifest_mod.beside(artifact)
    except manifest_mod.ManifestError as exc:
        raise DataError(str(exc)) from None
    declared = str(doc.format or "").lower().lstrip(".")
    if declared and declared != fmt:
        raise DataError(f"{mpath}: the manifest describes a .{declared} artifact but the file is .{fmt}")
    size, sha = manifest_mod.file_digest(artifact)
    if doc.sha256 and doc.sha256 != sha:
        raise DataError(
            f"{artifact}: sha256 {sha[:12]}... differs from its manifest ({str(doc.sha256)[:12]}...): "
            "the file changed after edgekit convert wrote the manifest"
        )
    if doc.size_bytes is not None and doc.size_bytes != size:
        raise DataError(f"{artifact}: {size} bytes, but its manifest says {doc.size_bytes}")
    warnings = []
    status = doc.status
    if status == "failed" and not allow_failed:
        cosine = doc.cosine
        shown = f" (cosine {cosine:.4f})" if isinstance(cosine, (int, float)) else ""
        raise UsageError(f"{artifact}: failed verification{shown}; it would compute wrong results in the app (--allow-failed packages it anyway)")
    if status in ("unverified", "skipped", "failed"):
        warnings.append(f"{artifact.name}: verification status is {status!r}; its results in the app are unchecked")
    return artifact, doc, warnings


# --- the model-info entry -----------------------------------------------------------------------


def _tensor(spec: TensorEntry, where: str, pixels: bool = False) -> dict[str, Any]:
    try:
        shape = [int(d) for d in spec.shape]
        name, dtype = str(spec.name), str(spec.dtype)
    except (TypeError, ValueError):
        raise DataError(f"{where}: each input/output needs a name, a shape of integers and a dtype") from None
    quant = spec.quantization
    if quant is not None:
        if not isinstance(quant, Mapping) or quant.get("scale") is None or quant.get("zero_point") is None:
            raise DataError(f"{where}: tensor {name!r} has incomplete quantization (needs scale and zero_point)")
        quant = {"scale": float(quant["scale"]), "zero_point": int(quant["zero_point"])}
    elif dtype in QUANTIZED_DTYPES and not pixels:
        raise DataError(f"{where}: {dtype} tensor {name!r} has no quantization scale and zero point")
    return {"name": name, "shape": shape, "dtype": dtype, "quantization": quant}


def _input_role(spec: Mapping[str, Any]) -> str | None:
    """Text roles by dtype and name (the artifact's own name or the PyTorch argument it came from)."""
    if spec["dtype"] not in INTEGER_DTYPES or len(spec["shape"]) != 2:
        return None
    names = f"{spec['name']} {spec.get('model_input') or ''}".lower()
    if "mask" in names:
        return "attention_mask"
    if "type" in names or "segment" in names:
        return "token_type_ids"
    return "token_ids"


def _image_layout(shape: Sequence[int]) -> str | None:
    if len(shape) != 4:
        return None
    if shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "NCHW"
    if shape[3] in (1, 3):
        return "NHWC"
    return None


def _per_channel(values, channels: int, what: str, where: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise DataError(f"{where}: preprocessing has {len(values)} {what} values for an image input with {channels} channel(s)")
    return values


def _image_block(inputs: list[dict], preprocessing: Mapping[str, Any] | None, where: str) -> dict[str, Any] | None:
    float_or_quant = [i for i, t in enumerate(inputs) if t["dtype"] in ("float32", "float16") + QUANTIZED_DTYPES]
    candidates = [i for i in float_or_quant if _image_layout(inputs[i]["shape"])]
    if len(inputs) != 1 or len(candidates) != 1:
        return None
    index = candidates[0]
    shape, layout = inputs[index]["shape"], _image_layout(inputs[index]["shape"])
    channels, height, width = (shape[1], shape[2], shape[3]) if layout == "NCHW" else (shape[3], shape[1], shape[2])
    pre = dict(preprocessing or {})
    from_manifest = any(pre.get(k) is not None for k in ("mean", "std", "scale"))
    mean = _per_channel(pre["mean"], channels, "mean", where) if pre.get("mean") is not None else [0.0] * channels
    std = _per_channel(pre["std"], channels, "std", where) if pre.get("std") is not None else [1.0] * channels
    if any(s == 0 for s in std):
        raise DataError(f"{where}: preprocessing std must be non-zero")
    return {
        "input": index,
        "layout": layout,
        "height": height,
        "width": width,
        "channels": channels,
        "color_layout": pre.get("color_layout") or "RGB",
        "scale": float(pre["scale"]) if pre.get("scale") is not None else DEFAULT_PIXEL_SCALE,
        "mean": mean,
        "std": std,
        "gray_weights": list(GRAY_WEIGHTS) if channels == 1 else None,
        "pixel_buffer": False,  # True: a Core ML image input, fed as a CVPixelBuffer of raw pixels
        "normalisation": "manifest" if from_manifest else "default: pixels scaled to 0..1 (the manifest has no preprocessing)",
    }


def _text_block(inputs: list[dict], vocab_file: str | None) -> dict[str, Any] | None:
    roles = [t["role"] for t in inputs]
    if "token_ids" not in roles:
        return None
    ids = inputs[roles.index("token_ids")]
    return {
        "ids_input": roles.index("token_ids"),
        "mask_input": roles.index("attention_mask") if "attention_mask" in roles else None,
        "type_ids_input": roles.index("token_type_ids") if "token_type_ids" in roles else None,
        "max_length": ids["shape"][1],
        "tokenizer": "wordpiece" if vocab_file else None,
        "vocab_file": vocab_file,
        "lowercase": True,
        "special_tokens": dict(SPECIAL_TOKENS),
    }


def _output_roles(outputs: list[dict], labels: list[str] | None, task_kind: str | None) -> None:
    """Mark the output a demo shows: logits (top-k over labels) or an embedding."""
    for spec in outputs:
        spec["role"] = "tensor"
    floats = [o for o in outputs if o["dtype"] in ("float32", "float16") + QUANTIZED_DTYPES]
    if labels:
        for spec in floats:
            if spec["shape"] and spec["shape"][-1] == len(labels):
                spec["role"] = "logits"
                return
    if task_kind == "image" and floats and len(floats[0]["shape"]) == 2:
        floats[0]["role"] = "logits"
    elif task_kind == "text" and floats:
        floats[0]["role"] = "embedding"


def model_entry(doc: Manifest | Mapping[str, Any], file_name: str, app: str, vocab_file: str | None = None) -> dict[str, Any]:
    """The models.json entry of one artifact, from its manifest alone (a mapping is typed first)."""
    where = f"{file_name}{manifest_mod.MANIFEST_SUFFIX}"
    if not isinstance(doc, Manifest):
        try:
            doc = Manifest.from_dict(doc)
        except ManifestError as exc:
            raise DataError(f"{where}: {exc}") from None
    fmt = artifact_format(file_name)
    # Core ML image inputs (coremltools ImageType) take raw 0..255 pixels: the model normalises them.
    pixel_inputs = set(find_nested(doc.target_details, "image_inputs") or ())
    inputs = [_tensor(s, where, pixels=s.name in pixel_inputs) for s in doc.inputs]
    for tensor, spec in zip(inputs, doc.inputs):
        tensor["model_input"] = spec.model_input
        tensor["role"] = _input_role(tensor) or "tensor"
    outputs = [_tensor(s, where) for s in doc.outputs]
    labels = [str(label) for label in doc.labels] if doc.labels else None
    pixels = [i for i, t in enumerate(inputs) if t["name"] in pixel_inputs]
    if pixels:
        image = _image_block(inputs, None, where)
        if image is not None:
            image.update(pixel_buffer=True, normalisation="in the model (Core ML image input takes 0..255 pixels)",
                         scale=1.0, mean=[0.0] * image["channels"], std=[1.0] * image["channels"])
    else:
        image = _image_block(inputs, doc.preprocessing, where)
    text = None if image else _text_block(inputs, vocab_file)
    if image:
        inputs[image["input"]]["role"] = "image"
        task = "image-classification"
    elif text:
        task = "text-classification" if labels else "text-embedding"
    else:
        task = "tensor"
    _output_roles(outputs, labels, "image" if image else "text" if text else None)
    if task == "text-classification" and not any(o["role"] == "logits" for o in outputs):
        task = "text-embedding"
        _output_roles(outputs, None, "text")
    for spec in outputs:
        spec["pooling"] = ("mean" if len(spec["shape"]) == 3 else "none") if spec["role"] == "embedding" else None
    details = doc.target_details
    try:
        state = doc.state_links()
    except ManifestError as exc:
        raise DataError(f"{where}: {exc}") from None
    return {
        "id": Path(file_name).stem,
        "file": file_name,
        "manifest_file": file_name + manifest_mod.MANIFEST_SUFFIX,
        "name": doc.name,
        "target": doc.target,
        "format": fmt,
        "runtime": app_runtime(app, file_name),
        "precision": doc.precision,
        "io": doc.io,
        "task": task,
        "size_bytes": doc.size_bytes,
        "sha256": doc.sha256,
        "flops": doc.flops,
        "status": doc.status,
        "signature": details.get("signature"),
        "method": details.get("method") or "forward",
        "inputs": inputs,
        "outputs": outputs,
        # output i of one step is fed back to input j of the next (a stateful model's h, c or cache)
        "state": [{"output": link["output"], "input": link["input"]} for link in state],
        "dynamic_axes": doc.dynamic_axes,
        "image": image,
        "text": text,
        "labels": labels,
        "top_k": min(TOP_K, len(labels)) if labels else TOP_K,
        "parity": doc.parity,
    }


def model_info(entries: list[dict[str, Any]], app: str) -> dict[str, Any]:
    return {
        "kind": MODEL_INFO_KIND,
        "schema_version": MODEL_INFO_VERSION,
        "app": app,
        "edgekit_version": __version__,
        "models": entries,
        "sample_texts": list(SAMPLE_TEXTS),
    }


def _check_vocab(path: str) -> list[str]:
    try:
        tokens = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--vocab {path}: {exc.strerror or exc}") from None
    missing = [t for t in SPECIAL_TOKENS.values() if t not in tokens]
    if missing:
        raise DataError(f"--vocab {path}: not a WordPiece vocabulary (lacks {', '.join(missing)})")
    return tokens


# --- putting it in the app ----------------------------------------------------------------------


def check_app_dir(app: str, app_dir: str | os.PathLike | None) -> Path:
    if app not in APPS:
        raise UsageError(f"--app {app!r}: choose one of {', '.join(APPS)}")
    folder = Path(app_dir) if app_dir else default_app_dir(app)
    missing = [m for m in APPS[app].markers if not (folder / m).exists()]
    if missing:
        hint = "" if app_dir else " (pass --app-dir: a copy of sample_apps/" + app + " from the edgekit repository)"
        raise UsageError(f"{folder}: not the edgekit {app} sample app (no {missing[0]}){hint}")
    return folder


def package(
    artifacts: Sequence[str | os.PathLike],
    app: str,
    app_dir: str | os.PathLike | None = None,
    *,
    vocab: str | None = None,
    allow_failed: bool = False,
) -> PackageResult:
    """Copy artifacts + manifests into the app and write models.json; all or nothing.

    The app's models folder afterwards holds exactly these artifacts (a previous set is replaced).
    """
    if not artifacts:
        raise UsageError("give at least one artifact to package")
    folder = check_app_dir(app, app_dir)
    layout = APPS[app]
    models: list[PackagedModel] = []
    names: dict[str, Path] = {}
    vocab_tokens = _check_vocab(vocab) if vocab else None
    for item in artifacts:
        artifact, doc, warnings = read_artifact(item, app, allow_failed)
        if artifact.name in names:
            raise UsageError(f"{artifact} and {names[artifact.name]} have the same file name; rename one (edgekit convert --name)")
        names[artifact.name] = artifact
        models.append(PackagedModel(artifact, manifest_mod.manifest_path(artifact), doc, {}, warnings))
    for model in models:
        model.entry = model_entry(model.manifest, model.source.name, app)
        if model.entry["text"] is not None:
            if vocab_tokens is not None:
                model.entry = model_entry(model.manifest, model.source.name, app, vocab_file=model.entry["id"] + ".vocab.txt")
            else:
                model.warnings.append(f"{model.source.name}: a text model but no --vocab; the app shows it with random token ids")
    info = model_info([m.entry for m in models], app)
    destination = folder / layout.models_dir
    _publish(models, info, destination, vocab)
    warnings = [w for m in models for w in m.warnings]
    return PackageResult(app, folder, destination, destination / MODEL_INFO_FILE, models,
                         build_commands(app, folder, [m.entry for m in models]), warnings)


def _publish(models: list[PackagedModel], info: dict[str, Any], destination: Path, vocab: str | None) -> None:
    """Stage everything beside the destination, then swap folders; the old set is kept on failure."""
    parent = destination.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".edgekit-package-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror or exc}") from None
    backup = None
    try:
        for model in models:
            target = stage / model.source.name
            if model.source.is_dir():
                shutil.copytree(model.source, target)
            else:
                shutil.copy2(model.source, target)
            shutil.copy2(model.manifest_source, stage / model.entry["manifest_file"])
            if vocab and model.entry["text"] and model.entry["text"]["vocab_file"]:
                shutil.copy2(vocab, stage / model.entry["text"]["vocab_file"])
        (stage / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if destination.exists():
            backup = parent / f".{destination.name}.edgekit-old-{os.getpid()}"
            destination.rename(backup)
        stage.rename(destination)
    except OSError as exc:
        if backup is not None and backup.exists() and not destination.exists():
            backup.rename(destination)
        raise OutputError(f"cannot write {destination}: {exc.strerror or exc}; the app was left as it was") from None
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
