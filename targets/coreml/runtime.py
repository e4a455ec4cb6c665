"""Run a Core ML model: coremltools' predict, which needs the Core ML framework, i.e. macOS.

Anywhere the model can be loaded and described (inputs, outputs) from its spec; on Linux ``run``
raises a DeviceError saying so. On macOS the runtime takes the model's own float inputs (what
verification feeds) and turns image inputs into the 8-bit images Core ML expects, using the pixel
scale and bias edgekit stored in the model's metadata.
"""
from __future__ import annotations

import platform
from importlib import metadata
from typing import Sequence

from edgekit.errors import DeviceError
from edgekit.targets.base import Runtime, TensorSpec
from edgekit.targets.coreml import analysis

NOT_ON_THIS_HOST = "numerical parity not run: Core ML executes only on macOS"


def can_execute() -> bool:
    return platform.system() == "Darwin"


class PackageRuntime(Runtime):
    """What both Core ML runtimes (the device's and edgekit's reference interpreter) keep of a package."""

    def __init__(self):
        self.path: str | None = None
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self._images: dict = {}

    def _pixels(self, name: str, value):
        """Model-space float (1, C, H, W) -> the 8-bit pixel values Core ML maps back onto it (float64)."""
        import numpy as np

        params = self._images[name]
        scale = np.asarray(params["scale"], dtype=np.float64).reshape(-1, 1, 1)
        bias = np.asarray(params["bias"], dtype=np.float64).reshape(-1, 1, 1)
        return np.clip(np.rint((np.asarray(value).astype(np.float64) - bias) / scale), 0, 255)


class CoreMLRuntime(PackageRuntime):
    def __init__(self, compute_units: str | None = None):
        super().__init__()
        self.compute_units = compute_units
        self._model = None

    def load(self, path: str, threads: int = 1) -> "CoreMLRuntime":
        spec = analysis.read_spec(path)
        self.path = str(path)
        self._images, self._inputs, self._outputs = analysis.fed_io(spec)  # image inputs become pixels in run()
        units = self.compute_units or analysis.user_metadata(spec).get(analysis.COMPUTE_UNITS_KEY, "all")
        self.compute_units = units
        if can_execute():
            from edgekit.targets.coreml.library import import_coremltools

            ct = import_coremltools()

            from edgekit.targets.coreml.settings import COMPUTE_UNITS

            self._model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, COMPUTE_UNITS[units]))
        return self

    def run(self, inputs: Sequence) -> list:
        if self._model is None:
            raise DeviceError(
                f"cannot run {self.path}: Core ML executes only on macOS (this host is {platform.system()})",
                hint="run it on a Mac, or benchmark it on an iOS device",
            )
        import numpy as np

        feeds = {}
        for spec, value in zip(self._inputs, inputs):
            if spec.name in self._images:
                feeds[spec.name] = self._to_image(spec.name, np.asarray(value))
            else:
                feeds[spec.name] = np.asarray(value).astype(spec.dtype, copy=False)
        result = self._model.predict(feeds)
        return [np.asarray(result[spec.name]) for spec in self._outputs]

    def _to_image(self, name: str, value):
        """Model-space float (1, C, H, W) -> the PIL image whose pixels Core ML maps back onto it."""
        import numpy as np
        from PIL import Image

        params = self._images[name]
        pixels = self._pixels(name, value[0]).astype(np.uint8)
        if pixels.shape[0] == 1:
            return Image.fromarray(pixels[0], mode="L")
        if params.get("color_layout") == "BGR":
            pixels = pixels[::-1]  # PIL images are RGB; Core ML reorders to the model's BGR itself
        return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")

    def version(self) -> str:
        try:
            version = metadata.version("coremltools")
        except metadata.PackageNotFoundError:  # pragma: no cover
            version = "unknown"
        host = f"macOS {platform.mac_ver()[0]}" if can_execute() else platform.system()
        return f"coremltools {version} (Core ML, {host}, compute units {self.compute_units})"
