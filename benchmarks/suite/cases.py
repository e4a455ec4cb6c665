"""The real models of the suite, each with its real calibration and evaluation data.

A case says what to load (a ``module:factory`` spec that ``edgekit convert --model`` also takes), its
inputs, the calibration samples (never used to score), the evaluation samples (and labels where the
data set has them), and which precisions each target is measured at. ``quick`` shrinks the data, not
the models.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# target -> precisions measured (edgekit and the direct tool both, unless the direct tool has no
# recipe for it: see DIRECT_MISSING). "none" is FP32.
PRECISIONS = {
    "tflite": ("none", "int8"),
    "onnx": ("none", "int8"),
    "executorch": ("none", "int8"),
    "torchscript-lite": ("none", "int8-dynamic"),
    "coreml": ("none", "int8"),
}
# edgekit rows without a direct counterpart, and why
DIRECT_MISSING = {
    ("coreml", "int8"): "coremltools calibrates int8 activations (linear_quantize_activations) by running the "
                        "model in Core ML, which needs macOS",
}


@dataclass
class Case:
    name: str
    title: str
    factory: str  # module:function, as `edgekit convert --model` takes it
    inputs: list[str]  # NAME:SHAPE[:DTYPE]
    calibration: dict[str, np.ndarray]  # input name -> N x shape[1:]
    evaluation: dict[str, np.ndarray]
    labels: np.ndarray | None  # evaluation labels, where the data set has them
    data_notes: list[str] = field(default_factory=list)
    verify_samples: int = 100  # edgekit's --eval-samples (from the evaluation set)
    # target -> precisions measured for this model on top of PRECISIONS (e.g. dynamic int8 for a transformer)
    extra_precisions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def input_names(self) -> list[str]:
        return [spec.split(":")[0] for spec in self.inputs]

    def eval_count(self) -> int:
        return len(next(iter(self.evaluation.values())))

    def calibration_samples(self) -> list[tuple]:
        arrays = [self.calibration[n] for n in self.input_names]
        return [tuple(a[i : i + 1] for a in arrays) for i in range(len(arrays[0]))]

    def evaluation_sample(self, i: int) -> tuple:
        return tuple(self.evaluation[n][i : i + 1] for n in self.input_names)

    def model(self):
        import importlib

        module, _, function = self.factory.partition(":")
        return getattr(importlib.import_module(module), function)().eval()


def efficientnet(quick: bool) -> Case:
    from benchmarks.models import photos

    images = photos(224, crops_per_photo=4 if quick else 16)
    order = np.random.default_rng(0).permutation(len(images))
    n_cal = 24 if quick else 64
    calibration, evaluation = images[order[:n_cal]], images[order[n_cal:]]
    return Case(
        "efficientnet_lite0", "EfficientNet-Lite0 (ImageNet, 4.65M parameters, 1x3x224x224)",
        "benchmarks.models:efficientnet_lite0", ["x:1x3x224x224"],
        {"x": calibration}, {"x": evaluation}, None,
        [f"{len(images)} real photos and crops of them (scikit-image and scikit-learn sample images, "
         f"{4 if quick else 16} views per photo): {n_cal} calibrate, {len(evaluation)} evaluate; no ImageNet labels, "
         "so parity is top-1 agreement with FP32"],
        verify_samples=min(len(evaluation), 100),
        # static int8 loses this network (measured: even simulated in eager PyTorch); int8 weights with
        # float activations are what a user falls back to, so they are measured too
        extra_precisions={"tflite": ("int8-dynamic",)},
    )


def minilm(quick: bool) -> Case:
    from benchmarks.models import MINILM_MAX_LENGTH, sentences, tokenized

    texts = sentences()
    order = np.random.default_rng(0).permutation(len(texts))
    n_cal, n_eval = (32, 64) if quick else (100, 200)
    calibration = tokenized([texts[i] for i in order[:n_cal]])
    evaluation = tokenized([texts[i] for i in order[n_cal : n_cal + n_eval]])
    L = MINILM_MAX_LENGTH
    return Case(
        "minilm_intent", f"all-MiniLM-L6-v2 + 157-class intent head (22.7M parameters, {L} tokens)",
        "benchmarks.models:minilm_intent", [f"input_ids:1x{L}:int64", f"attention_mask:1x{L}:int64"],
        calibration, evaluation, None,
        [f"real English sentences (Debian fortunes, {len(texts):,} entries, shuffled with seed 0): {n_cal} calibrate, "
         f"{n_eval} evaluate, padded/truncated to {L} tokens; the intent data set's labels are not shipped, so "
         "parity is top-1 agreement with FP32"],
        # edgekit verifies on the whole evaluation set: on 64 sentences fewer than 10 are confident, so
        # its tolerance judged top-1 on hesitant sentences too, unlike the suite's own measure
        verify_samples=n_eval,
        # int8 with dynamic activations is the usual INT8 for transformers; static int8 stays measured
        extra_precisions={"tflite": ("int8-dynamic",), "onnx": ("int8-dynamic",), "executorch": ("int8-dynamic",)},
    )


def fashion(quick: bool) -> Case:
    from benchmarks.models import FASHION_TRAIN, fashion_mnist

    x_train, _ = fashion_mnist("train")
    x_test, y_test = fashion_mnist("test")
    # calibration from training images the CNN was not trained on (it saw a seeded subset)
    order = np.random.default_rng(FASHION_TRAIN["seed"]).permutation(len(x_train))
    unseen = order[FASHION_TRAIN["samples"] :]
    n_cal = 100 if quick else 200
    n_test = 2000 if quick else len(x_test)
    return Case(
        "fashion_cnn", "CNN trained here on Fashion-MNIST (421k parameters, 1x1x28x28)",
        "benchmarks.models:fashion_cnn", ["x:1x1x28x28"],
        {"x": x_train[unseen[:n_cal]]}, {"x": x_test[:n_test]}, y_test[:n_test],
        [f"trained on {FASHION_TRAIN['samples']:,} of the 60,000 training images ({FASHION_TRAIN['epochs']} epochs, seed "
         f"{FASHION_TRAIN['seed']}); {n_cal} other training images calibrate; scored on "
         + ("all 10,000 test images" if n_test == len(x_test) else f"the first {n_test:,} of the 10,000 test images")
         + " with their real labels"],
        verify_samples=min(n_test, 300),
    )


CASES: dict[str, Callable[[bool], Case]] = {
    "efficientnet_lite0": efficientnet,
    "minilm_intent": minilm,
    "fashion_cnn": fashion,
}


def precisions_for(case: Case, target: str) -> tuple[str, ...]:
    return PRECISIONS[target] + case.extra_precisions.get(target, ())
