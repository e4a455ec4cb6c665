"""ExportedModel -> Core AI program (.aimodel): coreai-opt prepares the precision on the PyTorch side,
coreai-torch converts the ExportedProgram, coreai-core saves the asset (a folder: main.mlirb + metadata).

Precisions, all made on Linux (measured: every one below converts here with torch 2.13):
- none: float32 as exported; fp16: coreai-opt's ``cast_fp32_to_fp16`` on the ExportedProgram
  (parameters and inputs become float16, ops that need float32 keep a cast);
- int8-weight-only / int4-weight-only: coreai-opt ``Quantizer`` presets ``w8`` / ``w4`` (per-channel
  symmetric int weights; ``blockwise_shift_scale`` in the program);
- palettize8/6/4: coreai-opt ``KMeansPalettizer`` presets ``w8/w6/w4`` (k-means lookup tables per group
  of channels, data-free);
- int8: coreai-opt's default ``QuantizerConfig`` (int8 weights and activations), calibrated on the
  calibration samples.
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


def prepared_program(model, precision: str, calibration: Sequence[tuple] | None):
    """The ExportedProgram to convert for ``precision`` (and what was done, for the manifest)."""
    facts: dict[str, Any] = {}
    if precision == "none":
        return model.exported_program(), facts
    try:
        with _quiet():
            return _prepare(model, precision, calibration, facts)
    except EdgekitError:
        raise
    except Exception as exc:
        raise ConversionError(f"coreai-opt could not prepare {precision}: {first_line(exc)}") from exc


def _prepare(model, precision: str, calibration, facts: dict[str, Any]):
    import torch

    if precision == "fp16":
        from coreai_opt.casting.casting import cast_fp32_to_fp16

        return cast_fp32_to_fp16(model.exported_program()), {"recipe": "coreai_opt cast_fp32_to_fp16"}
    if precision in PALETTE_BITS:
        from coreai_opt.palettization import KMeansPalettizer, KMeansPalettizerConfig

        preset = f"w{PALETTE_BITS[precision]}"
        compressor = KMeansPalettizer(_copy(model.module), getattr(KMeansPalettizerConfig.presets, preset)())
        compressor.prepare(model.example_inputs)
        facts["recipe"] = f"coreai_opt KMeansPalettizer preset {preset}"
    else:
        from coreai_opt.quantization import Quantizer, QuantizerConfig

        if precision in WEIGHT_PRESETS:
            config = getattr(QuantizerConfig.presets, WEIGHT_PRESETS[precision])()
            facts["recipe"] = f"coreai_opt Quantizer preset {WEIGHT_PRESETS[precision]}"
        elif precision == "int8":
            config = QuantizerConfig()  # int8 weights and activations
            facts["recipe"] = "coreai_opt Quantizer default (W8A8)"
        else:
            raise ConversionError(f"coreai: no recipe for precision {precision}")
        compressor = Quantizer(_copy(model.module), config)
        prepared = compressor.prepare(model.example_inputs)
        if precision == "int8":
            with compressor.calibration_mode(), torch.no_grad():
                for sample in calibration or []:
                    prepared(*(torch.from_numpy(a.copy()) for a in sample))
            facts["calibration_samples"] = len(calibration or [])
    finalized = compressor.finalize()
    exported = torch.export.export(finalized, model.example_inputs, strict=False)
    return exported, facts


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
