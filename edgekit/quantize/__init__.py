"""The shared quantization layer: the exported program is quantized ONCE (PT2E), and every target
that can consume that decision lowers the same quantized graph (ExecuTorch/XNNPACK, TFLite through
litert-torch, ONNX as QDQ). Nothing here imports an ML framework at module import.

API (stable; the diagnose and mixed-precision helpers build on it)::

    from edgekit.quantize import QuantConfig
    from edgekit.quantize.pt2e import quantize_program, simulate

    config = QuantConfig()                       # defaults: what `--quantize int8` does
    result = quantize_program(exported_program, calibration_samples, config, reporter=None)
    result.module            # torch.fx.GraphModule after convert_pt2e (fake-quant reference graph:
                             #   quantize/dequantize ops around float ops; run it like the model)
    result.quantizer         # the torchao Quantizer that annotated it (litert-torch needs it)
    result.choice            # the Candidate that won (name, observer, cle, scores)
    result.candidates        # every Candidate tried, with its held-out scores (or its error)
    result.coverage          # Coverage: share of weights / compute ops really quantized
    result.to_manifest()     # the "quantization" block for the manifest (plain JSON types)

- ``exported_program``: a ``torch.export.ExportedProgram`` (the pre-dispatch graph of
  ``torch.export.export``, as edgekit.export makes it). It is never modified: work is on a copy.
- ``calibration_samples``: a sequence of input tuples (numpy arrays or tensors, batch as exported).
- ``QuantConfig`` (frozen dataclass, edgekit/quantize/config.py): ``observer`` ("auto" | "minmax" |
  "histogram" | "percentile" | "moving-average"), ``heldout_fraction``, ``max_candidates``, ``seed``,
  ``float_nodes`` (node names kept float: the mixed-precision hook), ``int16_nodes`` (int16-activation hook; TFLite realises kept layers as 16x8 itself).
- ``quantize_program`` splits the calibration samples into a calibration part and a HELD-BACK part,
  builds each candidate recipe on the first and scores it on the second (top-1 agreement on
  confident inputs, then cosine), and keeps the best.
- ``edgekit.quantize.annotate.edgekit_quantizer(config)``: the Quantizer used (XNNPACK's symmetric
  per-channel scheme, plus conv/linear fused with any clamp activation: ReLU6 = hardtanh(0, 6)).
- ``edgekit.quantize.coverage``: ``graph_coverage(graph_module)`` and per-artifact counters.

Root cause of the int8 collapse on EfficientNet-Lite0 (measured, docs/quantize.md): XNNPACK's and
litert-torch's PT2E quantizers fuse conv with ReLU only; ReLU6 (aten.hardtanh) "shares" its input's
observer, so each conv output was quantized over its whole pre-clamp range (tens of units) although
only [0, 6] survives the clamp: cosine 0.815 -> 0.991 once conv+hardtanh is annotated as one
pattern (benchmarks/int8_accuracy.py).
"""
from __future__ import annotations

from edgekit.quantize.config import Candidate, QuantConfig

__all__ = ["Candidate", "QuantConfig"]
