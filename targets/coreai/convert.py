"""ExportedModel -> Core AI program (.aimodel): coreai-opt prepares the precision on the PyTorch side,
coreai-torch converts the ExportedProgram, coreai-core saves the asset (a folder: main.mlirb + metadata).

Precisions, all made on Linux (measured: every one below converts here with torch 2.13):
- none: float32 as exported; fp16: coreai-opt's ``cast_fp32_to_fp16`` on the ExportedProgram
  (parameters and inputs become float16, ops that need float32 keep a cast);
- int8-weight-only / int4-weight-only: coreai-opt ``Quantizer`` presets ``w8`` / ``w4`` (per-channel
  symmetric int weights; ``blockwise_shift_scale`` in the program);
- palettize8/6/4: coreai-opt ``KMeansPalettizer`` presets ``w8/w6/w4`` (k-means lookup tables per group
  of channels, data-free);
- int8: the run's shared PT2E int8 program (edgekit.quantize, the scales every other target uses),
  its quantize / dequantize ops rewritten as coreai-torch's (targets/coreai/int8.py).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any, Iterator, Sequence

from edgekit.errors import ConversionError, EdgekitError, first_line

PALETTE_BITS = {"palettize8": 8, "palettize6": 6, "palettize4": 4}
WEIGHT_PRESETS = {"int8-weight-only": "w8", "int4-weight-only": "w4"}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """coreai-opt and coreai-torch warn about untested torch/torchao versions: nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("coreai_opt").setLevel(logging.ERROR)
        yield


def prepared_program(model, precision: str, calibration: Sequence[tuple] | None, options=None):
    """The ExportedProgram to convert for ``precision`` (and what was done, for the manifest)."""
    facts: dict[str, Any] = {}
    if precision == "none":
        return model.exported_program(), facts
    try:
        with _quiet():
            if precision == "int8":
                from edgekit.targets.coreai.int8 import shared_int8_program

                return shared_int8_program(model, options, calibration)
            return _prepare(model, precision, facts)
    except EdgekitError:
        raise
    except Exception as exc:
        tool = "the shared int8 program" if precision == "int8" else "coreai-opt"
        raise ConversionError(f"{tool} could not prepare coreai {precision}: {first_line(exc)}") from exc


def _prepare(model, precision: str, facts: dict[str, Any]):
    import torch

    if precision == "fp16":
        from coreai_opt.casting.casting import cast_fp32_to_fp16

        cast = cast_fp32_to_fp16(model.exported_program())
        fixed = _cast_default_dtype_results(cast)
        return cast, {"recipe": "coreai_opt cast_fp32_to_fp16", **({"default_dtype_results_cast": fixed} if fixed else {})}
    if precision in PALETTE_BITS:
        from coreai_opt.palettization import KMeansPalettizer, KMeansPalettizerConfig

        preset = f"w{PALETTE_BITS[precision]}"
        compressor = KMeansPalettizer(_copy(model.module), getattr(KMeansPalettizerConfig.presets, preset)())
        compressor.prepare(model.example_inputs)
        facts["recipe"] = f"coreai_opt KMeansPalettizer preset {preset}"
    else:
        from coreai_opt.quantization import Quantizer, QuantizerConfig

        if precision not in WEIGHT_PRESETS:
            raise ConversionError(f"coreai: no recipe for precision {precision}")
        config = getattr(QuantizerConfig.presets, WEIGHT_PRESETS[precision])()
        facts["recipe"] = f"coreai_opt Quantizer preset {WEIGHT_PRESETS[precision]}"
        compressor = Quantizer(_copy(model.module), config)
        compressor.prepare(model.example_inputs)
    finalized = compressor.finalize()
    exported = torch.export.export(finalized, model.example_inputs, strict=False)
    return exported, facts


def _cast_default_dtype_results(exported) -> int:
    """Cast to float16 the results of ops that make floats from integer tensors and Python numbers only
    (``torch.where(mask, 0.0, -1e4)``, ``arange`` with a float step): they compute in PyTorch's default
    dtype, float32, whatever dtype coreai-opt's fp16 pass writes in their metadata, and the next op then
    mixes float32 with float16 (coreai-torch: "expected scalar type torch.float32 but found
    torch.float16", a decoder's attention mask). Returns how many casts were inserted."""
    import operator

    import torch

    graph, count = exported.graph, 0
    for node in list(graph.nodes):
        value = node.meta.get("val")
        if node.op != "call_function" or node.target is operator.getitem or getattr(value, "dtype", None) != torch.float16:
            continue
        flat = _flatten(list(node.args) + list(node.kwargs.values()))
        if any(isinstance(a, torch.dtype) for a in flat):  # an explicit dtype: the op obeys it
            continue
        if any(isinstance(a, torch.fx.Node) and getattr(a.meta.get("val"), "is_floating_point", lambda: False)()
               for a in flat):  # a float tensor input: type promotion keeps its dtype
            continue
        with graph.inserting_after(node):
            cast = graph.call_function(torch.ops.aten._to_copy.default, (node,), {"dtype": torch.float16})
        node.replace_all_uses_with(cast, delete_user_cb=lambda user: user is not cast)
        cast.meta["val"] = value
        count += 1
    if count:
        graph.lint()
        exported.graph_module.recompile()
    return count


def _flatten(items) -> list:
    out = []
    for item in items:
        out.extend(_flatten(item) if isinstance(item, (list, tuple)) else [item])
    return out


def _copy(module):
    import copy

    return copy.deepcopy(module).eval()


def convert_program(exported, path: str) -> None:
    """coreai-torch: ExportedProgram (Core AI decompositions) -> AIProgram -> asset folder at ``path``."""
    import pathlib

    try:
        with _quiet():
            import coreai_torch

            converter = coreai_torch.TorchConverter()
            converter.add_exported_program(exported.run_decompositions(coreai_torch.get_decomp_table()))
            converter.to_coreai().save_asset(pathlib.Path(path))
    except EdgekitError:
        raise
    except Exception as exc:
        raise ConversionError(f"coreai-torch could not convert the model: {first_line(exc)}") from exc
