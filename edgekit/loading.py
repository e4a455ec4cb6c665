"""Detect and load a model: by content, never by file extension.

Forms, in the order they are recognised:
1. TorchScript archive (torch.jit.save)          -> ScriptModule
2. ExportedProgram (torch.export.save, .pt2)     -> ExportedProgram (+ its example inputs)
3. state_dict (+ ``--arch module:factory``)      -> nn.Module
4. no file, ``--model module:factory``           -> nn.Module
5. fully pickled nn.Module (torch.save(model))   -> nn.Module, only with ``trust_pickle``

Everything but (5) loads with ``weights_only=True``: a pickle can run arbitrary code. An
ExportedProgram archive can carry pickles too (entries flagged ``use_pickle``, opaque objects, example
inputs, the pre-2.7 layout), which ``torch.export.load`` would unpickle in full, and AOTInductor
libraries, which it would dlopen: each is inspected before loading (see :func:`_check_pt2_pickles`)
and the load itself runs with weights-only unpickling forced. TorchScript archives are read by TorchScript's own C++ unpickler, which resolves only
TorchScript types (a GLOBAL naming a Python callable is refused; tests/hostile proves it).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError, ModelLoadError, UnsafePickleError, UsageError, first_line

log = logging.getLogger(__name__)

# Keys under which training scripts commonly nest the state_dict of a checkpoint.
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


@dataclass
class LoadedModel:
    form: str  # torchscript | exported_program | state_dict | factory | pickle
    module: Any = None  # nn.Module or ScriptModule (None for an ExportedProgram)
    exported: Any = None  # torch.export.ExportedProgram when the file was one
    example_inputs: tuple | None = None
    input_names: list[str] | None = None
    source: str = ""
    warnings: list[str] = field(default_factory=list)


def import_object(spec: str, flag: str) -> Any:
    """Resolve ``package.module:attr`` (the current folder is importable, as with python -m)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{flag} {spec!r}: expected package.module:function")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"{flag} {spec!r}: cannot import {module_name!r} ({exc})") from None
    except SyntaxError as exc:  # the user's module does not parse: their mistake, named precisely
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else module_name
        raise ModelLoadError(f"{flag} {spec!r}: {where}: {type(exc).__name__}: {exc.msg}") from None
    except Exception as exc:  # the module raised while importing
        raise ModelLoadError(f"{flag} {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{flag} {spec!r}: {module_name!r} has no attribute {attr!r}") from None
    return obj


def _call_factory(spec: str, flag: str):
    import torch

    factory = import_object(spec, flag)
    if not callable(factory):
        raise UsageError(f"{flag} {spec!r} is not callable")
    try:
        module = factory()
    except Exception as exc:  # the user's code: report it in one line
        raise ModelLoadError(f"{flag} {spec!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"{flag} {spec!r} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def _sniff(path: Path) -> str:
    """'zip' (with which inner layout), 'pickle', or 'unknown', from the first bytes and the zip index."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelLoadError(f"{path}: corrupt or truncated archive ({exc})") from None
        if bad is not None:
            raise ModelLoadError(f"{path}: corrupt or truncated archive (bad CRC in {bad})")
        if len(set(names)) != len(names):  # readers disagree on which copy counts: refuse the ambiguity
            raise ModelLoadError(f"{path}: archive holds duplicate entries (not written by torch; refusing it)")
        tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
        if any(t.startswith("serialized_exported_program") or t.startswith("models/") for t in tails) or any(
            n.endswith("archive_format") for n in names
        ):
            return "exported_program"
        if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
            return "torchscript"
        if "data.pkl" in tails:
            return "torch_save"
        raise ModelLoadError(f"{path}: a zip archive, but not one torch.save, torch.jit.save or torch.export.save wrote")
    if head[:1] == b"\x80" or head[:2] == b"\x8a\x0a":  # pickle protocol marker / legacy torch magic
        return "torch_save"
    raise ModelLoadError(f"{path}: not a PyTorch model file (not a torch.save, TorchScript or ExportedProgram archive)")


_PICKLE_HINT = (
    "if you trust its source pass --trust-pickle, or save torch.save(model.state_dict()) "
    "and pass --arch, or save torch.export.save(torch.export.export(model, args))"
)
# .pt2 constants torch.export.load revives with a full unpickler, never with weights_only:
# torchbind objects (torch._C._pickle_load_obj) and opaque Python objects (pickle.loads).
_PT2_OBJECT_PREFIXES = ("custom_obj_", "opaque_obj_")
# Folders of a .pt2 whose shared libraries torch.export.load loads (load_pt2 -> _load_aoti).
_PT2_NATIVE_DIRS = ("data/aotinductor/",)
# Files of a .pt2 (new and pre-2.7 layout) that torch.export.load hands to torch.load.
_PT2_PICKLED_FILES = ("data/sample_inputs/", "serialized_state_dict.pt", "serialized_constants.pt",
                      "serialized_example_inputs.pt")


def _unsafe(path, what: str) -> UnsafePickleError:
    return UnsafePickleError(
        f"{path}: ExportedProgram archive carries {what}; loading it can run arbitrary code", hint=_PICKLE_HINT
    )


def _is_weights_only_refusal(exc: BaseException) -> bool:
    import pickle

    text = str(exc)
    return isinstance(exc, pickle.UnpicklingError) or "weights_only" in text or "Unsupported global" in text


def _check_pt2_pickles(path: Path) -> None:
    """Refuse a .pt2 whose pickled entries are more than plain tensors, before torch reads it.

    torch.export.load unpickles entries flagged ``use_pickle`` in the weights/constants configs, and
    the example inputs, with ``weights_only=False`` (torch 2.13, export/pt2_archive/_package.py and
    _export/serde/serialize.py): each such entry must load with the weights-only unpickler here.
    Opaque and torchbind objects cannot, and are refused outright; so are AOTInductor libraries,
    which torch.export.load dlopens (their constructors run native code).
    """
    import torch

    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pickled: list[tuple[str, str]] = []  # (what, zip entry name)
        for name in names:
            tail = name.split("/", 1)[1] if "/" in name else name
            if tail.startswith(_PT2_NATIVE_DIRS) or name.startswith(_PT2_NATIVE_DIRS):
                # torch.export.load dlopens AOTInductor libraries it finds here: native code runs
                raise _unsafe(path, f"compiled native code ({tail}, AOTInductor)")
            if tail.endswith(("_weights_config.json", "_constants_config.json")):
                folder = name.rsplit("/", 1)[0]
                try:
                    config = json.loads(zf.read(name)).get("config") or {}
                except (ValueError, AttributeError) as exc:
                    raise ModelLoadError(f"{path}: corrupt archive ({tail}: {exc})") from None
                for fqn, meta in config.items():
                    entry = str((meta or {}).get("path_name", ""))
                    if entry.startswith(_PT2_OBJECT_PREFIXES):
                        raise _unsafe(path, f"a pickled Python object ({fqn!r}, {entry})")
                    if (meta or {}).get("use_pickle"):
                        pickled.append((f"pickled entry {fqn!r}", f"{folder}/{entry}"))
            elif tail.startswith(_PT2_PICKLED_FILES) or (
                tail.startswith(("data/weights/", "data/constants/")) and tail.endswith(".pt")
            ):
                pickled.append((tail, name))
        for what, name in pickled:
            if name not in names:
                raise ModelLoadError(f"{path}: corrupt archive ({what} names a missing file)")
            try:
                torch.load(io.BytesIO(zf.read(name)), map_location="cpu", weights_only=True)
            except Exception as exc:
                if _is_weights_only_refusal(exc):
                    raise _unsafe(path, f"{what}, which is a pickled Python object, not plain tensors") from None
                raise ModelLoadError(f"{path}: corrupt archive ({what}: {first_line(exc)})") from None


class _RefusingPickle:
    """Stands in for the ``pickle`` module inside torch's .pt2 reader while an untrusted file loads."""

    def __getattr__(self, name):
        import pickle

        return getattr(pickle, name)

    @staticmethod
    def loads(*args, **kwargs):
        import pickle

        raise pickle.UnpicklingError("weights_only: a pickled object in an untrusted archive")


@contextlib.contextmanager
def _no_full_unpickling(enabled: bool = True):
    """Defence in depth behind :func:`_check_pt2_pickles`: whatever path torch takes inside
    torch.export.load, torch.load runs weights-only (TORCH_FORCE_WEIGHTS_ONLY_LOAD, read by torch on
    every call) and the archive reader's pickle.loads refuses. Process-wide while it lasts."""
    if not enabled:
        yield
        return
    from torch.export.pt2_archive import _package

    saved_env = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    saved_pickle = getattr(_package, "pickle", None)
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    _package.pickle = _RefusingPickle()
    try:
        yield
    finally:
        _package.pickle = saved_pickle
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _unwrap_checkpoint(obj: Any) -> Any:
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in _CHECKPOINT_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                log.info("using the %r entry of the checkpoint as the state_dict", key)
                return obj[key]
    return obj


def _is_state_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_model(
    path: str | None = None,
    *,
    arch: str | None = None,
    model: str | None = None,
    trust_pickle: bool = False,
) -> LoadedModel:
    """Load a model from a file and/or a factory, following the rules in the module docstring."""
    if path is None:
        if model is None:
            raise UsageError("give a model file, or --model package.module:factory")
        module = _call_factory(model, "--model")
        return finish_module(LoadedModel("factory", module=module, source=model))
    if model is not None:
        raise UsageError("give either a model file or --model, not both")

    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{path}: no such file")
    if p.is_dir():
        raise ModelLoadError(f"{path}: is a folder, expected a model file")
    if p.stat().st_size == 0:
        raise ModelLoadError(f"{path}: empty file")
    kind = _sniff(p)
    if kind == "torchscript":
        return _load_torchscript(path)
    if kind == "exported_program":
        return _load_exported_program(path, trust_pickle)
    return _load_saved(path, arch, trust_pickle)


def _load_torchscript(path: str) -> LoadedModel:
    import torch

    source = str(Path(path))
    try:
        module = torch.jit.load(source, map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot load TorchScript archive ({first_line(exc)})") from exc
    return finish_module(LoadedModel("torchscript", module=module, source=source))


def _load_exported_program(path: str, trust_pickle: bool) -> LoadedModel:
    import torch

    source = str(Path(path))
    if not trust_pickle:
        _check_pt2_pickles(Path(path))
    try:
        with _no_full_unpickling(enabled=not trust_pickle):
            ep = torch.export.load(source)
    except EdgekitError:
        raise
    except Exception as exc:
        if not trust_pickle and _is_weights_only_refusal(exc):
            raise _unsafe(path, "an entry that is not plain tensors") from None
        raise ModelLoadError(f"{path}: cannot load ExportedProgram ({first_line(exc)})") from exc
    if ep is None or not hasattr(ep, "graph_signature"):
        raise ModelLoadError(f"{path}: the archive holds no ExportedProgram named 'model'")
    example = None
    if ep.example_inputs is not None:
        args, kwargs = ep.example_inputs
        example = tuple(args) if not kwargs else None
    names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    return LoadedModel("exported_program", exported=ep, example_inputs=example, input_names=names, source=source)


def _load_saved(path: str, arch: str | None, trust_pickle: bool) -> LoadedModel:
    """torch.save output: a state_dict or checkpoint (safe), or a pickled module (needs trust)."""
    import torch

    source = str(Path(path))
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "weights_only" not in text and "Unsupported global" not in text:
            raise ModelLoadError(f"{path}: cannot read ({first_line(exc)})") from exc
        if not trust_pickle:
            raise UnsafePickleError(
                f"{path} is a pickled Python object; loading it can run arbitrary code",
                hint=_PICKLE_HINT,
            ) from None
        try:
            obj = torch.load(source, map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise ModelLoadError(f"{path}: cannot unpickle ({first_line(exc2)})") from exc2
    obj = _unwrap_checkpoint(obj)
    if isinstance(obj, torch.nn.Module):  # a fully pickled module, loaded above only when trusted
        return finish_module(LoadedModel("pickle", module=obj, source=source))
    if not _is_state_dict(obj):
        raise ModelLoadError(f"{path}: holds a {type(obj).__name__}, not a model, state_dict or checkpoint")
    if arch is None:
        raise UsageError(f"{path} is a state_dict (weights only): pass --arch package.module:factory to build the model")
    module = _call_factory(arch, "--arch")
    _load_state(module, obj, arch, path)
    return finish_module(LoadedModel("state_dict", module=module, source=source))


def _first_of(label: str, items: list[str]) -> str:
    return f"{label}: {items[0]}" + (f" (+{len(items) - 1} more)" if len(items) > 1 else "")


def _load_state(module, state: dict, arch: str, path: str) -> None:
    own = module.state_dict()
    unexpected = [key for key in state if key not in own]
    mismatched = [f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}" for key, value in state.items()
                  if key in own and tuple(own[key].shape) != tuple(value.shape)]
    missing = [k for k in own if k not in state]
    parts = [_first_of(label, items) for label, items in
             (("shape mismatch", mismatched), ("missing", missing), ("unexpected", unexpected)) if items]
    if parts:
        raise ModelLoadError(f"{path}: state_dict does not fit --arch {arch} ({'; '.join(parts)})")
    module.load_state_dict(state, strict=True)


def finish_module(loaded: LoadedModel) -> LoadedModel:
    module = loaded.module
    # A factory-built module is in training mode by construction: only a saved mode is worth a warning.
    if module is not None and loaded.form in ("pickle", "torchscript", "module") and getattr(module, "training", False):
        loaded.warnings.append("the model was in training mode; switched to eval() (dropout and batch-norm frozen)")
    if module is not None:
        module.eval()
    return loaded
