"""Load the teacher: any model file edgekit.loading reads, ``module:factory``, or a Hugging Face folder.

A Hugging Face folder (``config.json`` + weights) is wrapped so that it takes plain tensors
(``input_ids``, ``attention_mask``) and returns one tensor: the logits when the model has a head,
otherwise the sentence embedding (attention-masked mean of ``last_hidden_state``, the
sentence-transformers convention). Its tokenizer comes along for text data.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import MissingDependencyError, ModelLoadError, UsageError
from edgekit.options import InputSpec


@dataclass
class Teacher:
    module: Any  # torch.nn.Module in eval mode
    specs: list[InputSpec]
    source: str
    form: str  # a load_model form, or "huggingface"
    tokenizer: Any = None
    output_kind: str | None = None  # "logits" | "embedding" when the teacher itself knows
    flops: int | None = None
    warnings: list[str] = field(default_factory=list)


def _huggingface_wrapper_class():
    import torch

    class HuggingFaceModel(torch.nn.Module):
        """Named tensors in, one tensor out: what export, losses and converters want."""

        def __init__(self, model, input_names: list[str], pooling: str):
            super().__init__()
            self.model = model
            self.input_names = list(input_names)
            self.pooling = pooling  # "logits" or "mean"

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            # explicit names, so that the exported .pt2 (and every artifact) keeps them
            kwargs = {"input_ids": input_ids}
            if attention_mask is not None:
                kwargs["attention_mask"] = attention_mask
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            out = self.model(**kwargs)
            if self.pooling == "logits":
                return out.logits
            hidden = out.last_hidden_state
            if attention_mask is None:
                return hidden.mean(dim=1)
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    return HuggingFaceModel


def is_huggingface_folder(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def load_huggingface(path: str, max_length: int) -> Teacher:
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise MissingDependencyError("transformers (needed for a Hugging Face model folder)", "distill")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network from here
    import transformers

    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}/config.json: unreadable ({exc})") from None
    arch = (config.get("architectures") or ["AutoModel"])[0]
    cls = getattr(transformers, arch, None) or transformers.AutoModel
    try:
        model = cls.from_pretrained(path)
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: cannot load the Hugging Face model ({type(exc).__name__}: {first})") from exc
    model.eval()
    # token_type_ids stay at their default (zeros): one segment, as sentence models use them
    names = ["input_ids"] + (["attention_mask"] if "attention_mask" in tokenizer.model_input_names else [])
    has_logits = any(arch.endswith(s) for s in ("ForSequenceClassification", "ForImageClassification", "ForTokenClassification"))
    module = _huggingface_wrapper_class()(model, names, "logits" if has_logits else "mean").eval()
    specs = [InputSpec(n, (1, max_length), "int64") for n in names]
    return Teacher(module, specs, path, "huggingface", tokenizer, "logits" if has_logits else "embedding")


def load_tokenizer(path: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers

        return transformers.AutoTokenizer.from_pretrained(path)
    except ImportError:
        raise MissingDependencyError("transformers (needed for --tokenizer)", "distill") from None
    except Exception as exc:
        raise UsageError(f"--tokenizer {path}: cannot load a tokenizer ({type(exc).__name__})") from None


def load_teacher(
    spec: str,
    *,
    arch: str | None = None,
    trust_pickle: bool = False,
    inputs: list[str] | None = None,
    max_length: int = 128,
    tokenizer: str | None = None,
    seed: int = 0,
) -> Teacher:
    """``spec``: a model file, a Hugging Face folder, or ``package.module:factory``."""
    from edgekit.export import prepare
    from edgekit.loading import load_model

    if is_huggingface_folder(spec):
        teacher = load_huggingface(spec, max_length)
    else:
        is_factory = ":" in spec and not Path(spec).exists() and not spec.endswith((".pt", ".pt2", ".pth"))
        loaded = load_model(None if is_factory else spec, arch=arch, model=spec if is_factory else None, trust_pickle=trust_pickle)
        specs = [InputSpec.parse(s) for s in inputs or []]
        prepared = prepare(loaded, specs, seed=seed)
        teacher = Teacher(prepared.module, list(prepared.inputs), loaded.source, loaded.form,
                          flops=prepared.flops, warnings=list(loaded.warnings))
    if inputs and teacher.form == "huggingface":
        teacher.specs = [InputSpec.parse(s) for s in inputs]
    if tokenizer is not None:
        teacher.tokenizer = load_tokenizer(tokenizer)
    for p in teacher.module.parameters():
        p.requires_grad_(False)
    return teacher


def eval_mode(module):
    """module.eval(), except for an ExportedProgram's module, which refuses it (it was exported in eval mode)."""
    try:
        module.eval()
    except NotImplementedError:
        pass
    return module


def batched_forward(module, batch_inputs):
    """Run a module on a batch; a graph exported for batch 1 (a .pt2 teacher) runs sample by sample."""
    import torch

    try:
        return module(*batch_inputs)
    except Exception:
        n = batch_inputs[0].shape[0]
        if n == 1:
            raise
        outs = [module(*(t[i : i + 1] for t in batch_inputs)) for i in range(n)]
        if isinstance(outs[0], torch.Tensor):
            return torch.cat(outs)
        from torch.utils import _pytree as pytree

        flat = [pytree.tree_flatten(o)[0] for o in outs]
        spec = pytree.tree_flatten(outs[0])[1]
        return pytree.tree_unflatten([torch.cat([f[j] for f in flat]) for j in range(len(flat[0]))], spec)
