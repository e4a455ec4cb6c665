"""A device kind is one module and one registry entry: a toy kind from a temporary distribution
(its own Device subclass, an `edgekit.devices` entry point) is measured by `edgekit bench` without
any core file knowing it, and strategies pick by its declared capabilities."""
from __future__ import annotations

import json
import textwrap

import pytest

from edgekit.bench.devices import device_kinds, parse_device
from edgekit.cli import main

TOY = '''
"""A toy device kind: a 'board' that is a private folder on this machine, reached by copying."""
import os
import shutil
import sys
import tempfile

from edgekit.bench.devices.base import PYTHON, RUN, STAGE, Device, run_local


class FolderBoard(Device):
    kind = "folderboard"
    prefixes = ("folder:",)
    form = "folder:NAME"
    capabilities = frozenset({STAGE, RUN, PYTHON})

    def __init__(self, spec):
        self.id = spec
        self.workdir = tempfile.mkdtemp(prefix="toy-board-")

    @classmethod
    def discover(cls, *, ssh_config=None, probe=False):
        return [{"id": "folder:one", "kind": cls.kind, "state": "ready", "model": "toy folder board", "detail": None}], []

    def describe(self):
        return {"model": "toy folder board", "os": None, "cpu": None, "cores": 1}

    def python(self):
        return [sys.executable]

    def stage(self, local):
        target = os.path.join(self.workdir, os.path.basename(local))
        shutil.copy(local, target)
        return target

    def push(self, local, remote):
        shutil.copy(local, remote)

    def pull(self, remote, local):
        if not os.path.exists(remote):
            raise FileNotFoundError(remote)
        shutil.copy(remote, local)

    def run(self, argv, timeout):
        return run_local(argv, timeout, what=f"{self.id}: measuring", cwd=self.workdir)

    def remove(self, remote):
        if os.path.exists(remote):
            os.unlink(remote)

    def close(self):
        shutil.rmtree(self.workdir, ignore_errors=True)
'''


@pytest.fixture
def toy_kind(tmp_path, monkeypatch):
    from edgekit import plugins

    root = tmp_path / "site"
    (root / "toyboard").mkdir(parents=True)
    (root / "toyboard" / "__init__.py").write_text(textwrap.dedent(TOY))
    dist = root / "toyboard-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyboard\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[edgekit.devices]\nfolderboard = toyboard:FolderBoard\n")
    monkeypatch.syspath_prepend(str(root))
    plugins.entry_points_of.cache_clear()
    yield
    plugins.entry_points_of.cache_clear()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A real ONNX model made with onnx's own helpers (no exporter needed): y = relu(x W + b)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_a_toy_device_kind_from_another_distribution_is_benched(toy_kind, tiny_onnx, tmp_path, capsys):
    assert "folderboard" in device_kinds()
    assert parse_device("folder:one").kind == "folderboard"
    html = tmp_path / "report.html"
    code = main(["bench", tiny_onnx, "--device", "folder:one", "--runs", "5", "--warmup", "1", "--rounds", "2",
                 "--no-peak", "--json", "-", "--html", str(html)])
    record = json.loads(capsys.readouterr().out)["results"][0]
    assert code == 0, record["error"]
    assert record["device"]["id"] == "folder:one" and record["device"]["kind"] == "folderboard"
    # chosen by capability (it runs Python): edgekit's measuring module, with its memory definition
    assert record["settings"]["runner"] == "python" and record["memory"]["definition"] == "model-share"
    assert record["runtime"]["name"] == "onnxruntime" and record["timings_ms"]["count"] == 5
    rounds = record["rounds"]
    assert rounds["count"] == 2 and rounds["ci_low_ms"] <= rounds["mean_p50_ms"] <= rounds["ci_high_ms"]
    assert record["device_state"]["runtime"].startswith("onnxruntime ")
    # the interval and the memory definition are in the HTML report too
    page = html.read_text()
    interval = f"{rounds['ci_low_ms']:.3f}-{rounds['ci_high_ms']:.3f} (n=2)"
    assert "p50 95% CI" in page and interval in page and "(model share)" in page
    assert "Student-t interval of the mean of the per-round p50s" in page


def test_help_errors_and_devices_list_the_registered_kinds(toy_kind, capsys):
    from edgekit.errors import UsageError

    assert main(["devices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["devices"]
    assert {"id": "folder:one", "kind": "folderboard", "state": "ready", "model": "toy folder board", "detail": None} in rows

    with pytest.raises(UsageError, match=r"unknown device; use one of host, ssh://\[user@\]host\[:port\], adb:SERIAL, "
                                         r"ios:UDID, folder:NAME"):
        parse_device("watch:1")
