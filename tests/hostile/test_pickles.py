"""No code runs from a model file: crafted archives whose pickles would create a marker file.

Each crafted file is first shown to be really malicious (loaded with trust, the marker appears),
then refused on every path that reads a model: convert, distill, run and the Python API."""
from __future__ import annotations

import pickle
import zipfile

import pytest

from tests.hostile import crafted
from tests.hostile.conftest import check_failure, run_cli

PT2_CRAFTS = {
    "pickled-weight": crafted.pt2_pickled_weight,
    "pickled-constant": crafted.pt2_pickled_constant,
    "opaque-object": lambda src, dest, marker: crafted.pt2_pickled_constant(src, dest, marker, "opaque_obj_"),
    "example-inputs": crafted.pt2_evil_sample_inputs,
    "legacy-layout": crafted.pt2_legacy,
    "aoti-library": crafted.pt2_aoti_library,  # not a pickle: a shared library torch dlopens
}


def _evil_pt2(kind, model_dir, tmp_path, marker):
    return PT2_CRAFTS[kind](model_dir / "tiny.pt2", tmp_path / f"{kind}.pt2", marker)


@pytest.mark.parametrize("kind", PT2_CRAFTS)
def test_crafted_pt2_really_runs_code_when_trusted(kind, model_dir, tmp_path, marker):
    """The control: torch.export.load on the crafted file runs its pickle (so the refusals below
    are what keeps it from running)."""
    from edgekit.loading import load_model

    import shutil

    path = _evil_pt2(kind, model_dir, tmp_path, marker)
    try:
        load_model(str(path), trust_pickle=True)
    except Exception:
        pass  # the archive may not make a usable program after its payload ran
    if kind == "aoti-library" and not (shutil.which("cc") or shutil.which("gcc")):
        return  # no compiler to build a real library: the refusal tests below still hold
    assert marker.exists()


@pytest.mark.parametrize("kind", PT2_CRAFTS)
def test_convert_refuses_crafted_pt2(kind, model_dir, tmp_path, marker):
    path = _evil_pt2(kind, model_dir, tmp_path, marker)
    out = tmp_path / "out"
    line = check_failure(run_cli("convert", path, "-t", "onnx", "-o", out), 3, out=out, marker=marker)
    assert "loading it can run arbitrary code" in line and "--trust-pickle" in line


def test_api_refuses_crafted_pt2(model_dir, tmp_path, marker):
    import edgekit
    from edgekit.errors import UnsafePickleError

    path = _evil_pt2("pickled-weight", model_dir, tmp_path, marker)
    with pytest.raises(UnsafePickleError, match="pickled entry '.*'.*not plain tensors") as err:
        edgekit.convert(str(path), target="onnx", output_dir=str(tmp_path / "out"))
    assert err.value.exit_code == 3 and not marker.exists()


def test_distill_refuses_crafted_teacher(model_dir, tmp_path, marker):
    import numpy as np

    path = _evil_pt2("example-inputs", model_dir, tmp_path, marker)
    data = tmp_path / "train.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((16, 1, 8)).astype("float32"))
    proc = run_cli("distill", "--teacher", path, "--student", "tests.hostile.models:tiny", "--data", data,
                   "-o", tmp_path / "student.pt2", "--no-checkpoint")
    check_failure(proc, 3, marker=marker, says="loading it can run arbitrary code")
    assert not (tmp_path / "student.pt2").exists()


def test_run_refuses_crafted_model(model_dir, tmp_path, marker):
    path = _evil_pt2("opaque-object", model_dir, tmp_path, marker)
    toml = tmp_path / "pipeline.toml"
    toml.write_text(f'[convert]\nmodel = "{path}"\ntargets = ["onnx"]\noutput_dir = "out"\n')
    check_failure(run_cli("run", toml), 3, out=tmp_path / "out", marker=marker, says="pickled Python object")


@pytest.mark.parametrize("entry", ["constants.pkl", "data.pkl"])
def test_torchscript_archive_with_a_python_global_is_refused(entry, model_dir, tmp_path, marker):
    """TorchScript's own unpickler resolves no Python callable: the GLOBAL is refused, nothing runs."""
    path = crafted.torchscript_evil(model_dir / "tiny_ts.pt", tmp_path / "evil_ts.pt", marker, entry)
    out = tmp_path / "out"
    check_failure(run_cli("convert", path, "-i", "x:1x8", "-t", "onnx", "-o", out), 3, out=out, marker=marker,
                  says="cannot load TorchScript archive")


def test_full_pickle_with_a_payload_is_refused(tmp_path, marker):
    path = tmp_path / "whole.pt"
    path.write_bytes(crafted.evil_pickle(marker))
    check_failure(run_cli("convert", path, "-i", "x:1x8", "-o", tmp_path / "out"), 3, marker=marker,
                  says="is a pickled Python object; loading it can run arbitrary code")


def test_zip_with_duplicate_entries_is_refused(model_dir, tmp_path, marker):
    """Two entries of one name: Python's zipfile reads the last, other readers the first."""
    path = tmp_path / "dup.pt2"
    with zipfile.ZipFile(model_dir / "tiny.pt2") as zin, zipfile.ZipFile(path, "w") as zout:
        names = zin.namelist()
        for name in names:
            zout.writestr(name, zin.read(name))
        sample = next(n for n in names if "sample_inputs" in n)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
            zout.writestr(sample, pickle.dumps(None))
    check_failure(run_cli("convert", path, "-o", tmp_path / "out"), 3, says="duplicate entries")


def test_pt2_with_tensor_only_pickled_entry_still_loads(model_dir, tmp_path):
    """A use_pickle entry that holds a plain tensor passes the weights-only check: only code is refused."""
    import io
    import json

    import torch

    from edgekit.loading import load_model

    cfg = json.loads(zipfile.ZipFile(model_dir / "tiny.pt2").read("tiny/data/weights/model_weights_config.json"))
    first = next(iter(cfg["config"].values()))
    first["use_pickle"] = True
    buffer = io.BytesIO()
    torch.save(torch.nn.Parameter(torch.randn(4, 8)), buffer)
    path = crafted.rewrite_zip(model_dir / "tiny.pt2", tmp_path / "plain.pt2", {
        "data/weights/model_weights_config.json": json.dumps(cfg).encode(),
        "data/weights/" + first["path_name"]: buffer.getvalue(),
    })
    loaded = load_model(str(path))
    assert loaded.form == "exported_program" and loaded.example_inputs[0].shape == (1, 8)
