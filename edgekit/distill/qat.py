"""Quantization-aware distillation (``--qat int8``) with torchao's PT2E flow.

The student is exported (batch axis dynamic), prepared with ``prepare_qat_pt2e`` and XNNPACK's int8
scheme (per-channel symmetric int8 weights, per-tensor int8 activations: the scheme the mobile int8
runtimes execute), and trained against the float teacher with fake quantization in the loop, so the
weights settle where int8 rounding costs little.

Afterwards:
- the fake-quantized graph, its ranges frozen, gives the student's int8 metric in the report;
- the trained float weights go back into the eager student (PT2E keeps the parameter names), which
  is what ``edgekit convert --quantize int8`` then calibrates and quantizes for any target.

``convert_pt2e`` (an int8 reference program) is deliberately not run: with batch-norm it re-exports
over a hundred pattern graphs (minutes on a small CPU), and no edgekit target consumes its output.
"""
from __future__ import annotations

from edgekit.errors import MissingDependencyError, UsageError

SCHEMES = ("int8",)


def _require():
    import importlib.util

    if importlib.util.find_spec("torchao") is None:
        raise MissingDependencyError("torchao (needed for --qat)", "executorch")
    if importlib.util.find_spec("executorch") is None:
        raise MissingDependencyError("executorch (its XNNPACK quantizer, needed for --qat)", "executorch")


def quantizer():
    _require()
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


def prepare(student, example_inputs, scheme: str = "int8"):
    """The fake-quantized training graph of ``student`` (a torch.fx GraphModule)."""
    import torch

    if scheme not in SCHEMES:
        raise UsageError(f"--qat {scheme!r}: supported: {', '.join(SCHEMES)}")
    _require()
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple({0: batch} for _ in example_inputs)
    student.train()  # export the training graph: batch-norm in training mode, folded for QAT by prepare
    try:
        graph = torch.export.export(student, tuple(example_inputs), dynamic_shapes=dynamic, strict=False).module()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--qat: the student cannot be exported with a dynamic batch axis ({type(exc).__name__}: {first})") from exc
    return prepare_qat_pt2e(graph, quantizer())


def set_mode(module, training: bool) -> None:
    """PT2E graphs refuse .train()/.eval(): these swap dropout and batch-norm ops in the graph."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    (move_exported_model_to_train if training else move_exported_model_to_eval)(module)


def load_float_weights(prepared, student) -> None:
    """Copy the QAT-trained weights (and batch-norm statistics) back into the eager student."""
    state = prepared.state_dict()
    own = student.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise UsageError(f"--qat: the trained graph lacks {missing[0]!r}; cannot recover the student's weights")
    student.load_state_dict({k: state[k] for k in own}, strict=True)
    student.eval()


def freeze_for_evaluation(prepared) -> None:
    """Eval mode with the learned int8 ranges frozen: the graph then computes what int8 will."""
    from torchao.quantization.pt2e import disable_observer

    set_mode(prepared, False)
    prepared.apply(disable_observer)
