"""Model families on every target (issue 13): family x target x precision, and the LSTM's conversion cost.

    python -m benchmarks.families lstm      # CRNN recognizer: ExecuTorch (PyTorch's decomposition vs the
                                            # packed LSTM route) vs TFLite conversion time, nodes, size, latency
    python -m benchmarks.families matrix [--families crnn,decoder,efficientnet,minilm] [--targets ...]
                                         [--eval-samples N]   # default: each family's EVAL_SAMPLES
    python -m benchmarks.families render    # the section from the JSON results alone

Families (real models where this machine has them):
- CRNN text-line recognizer (conv stack + 2-layer BiLSTM + CTC head, 0.9M parameters, trained here with
  CTC for 700 steps on strings of scikit-learn's handwritten digits, four per 32x128 line; weights cached
  in ~/.cache/edgekit/benchmarks) on held-out digit strings;
- the decoder step (benchmarks/decoder_model.py, KV cache as I/O; the fortunes-trained weights of
  benchmarks.decoder_lm when cached in /tmp/edgekit-decoder-lm, else random) on real decode steps;
- EfficientNet-Lite0 (ImageNet) on real photos; all-MiniLM-L6-v2 + intent head on fortunes sentences
  (the suite's data: benchmarks/suite/cases.py).
Each cell is one `edgekit.convert` (one target, one precision) after the target's imports are warm;
results go to benchmarks/results/families_*.json (cells merge across runs) and the section
benchmarks/results/sections/families.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
SECTION = os.path.join(RESULTS, "sections", "families.md")
LSTM_JSON = os.path.join(RESULTS, "families_lstm.json")
MATRIX_JSON = os.path.join(RESULTS, "families_matrix.json")
TARGETS = ("tflite", "executorch", "onnx", "torchscript-lite", "coreml", "coreai")
PRECISIONS = ("none", "fp16", "int8-dynamic", "int8")
CRNN_INPUT = "image:1x1x32x128"
DECODER_WORK = "/tmp/edgekit-decoder-lm"
# evaluation samples per family: enough that top-1 is judged on >= 10 inputs where FP32 is confident
# (edgekit.verify's rule; with fewer it falls back to all inputs, where one hesitant flip of 8 is 0.875).
# `python -m benchmarks.families confident` counts them on the FP32 models: MiniLM + intent head is
# confident on few fortunes sentences (they are not intents: 1 of the first 8), EfficientNet-Lite0 on about
# a third of the photo views. CRNN: each of a line's 32 time steps is a row, so 32 lines give ~1,000 rows.
EVAL_SAMPLES = {"crnn": 32, "decoder": 32, "efficientnet": 64, "minilm": 200}


class CRNN(nn.Module):
    """Conv stack -> (B, C, 1, W/4) -> sequence of W/4 = 32 steps -> 2-layer BiLSTM -> per-step
    scores over 36 characters + the CTC blank (logits: a CTC decoder takes their argmax or log-softmax;
    log-probabilities of random weights would all sit near -log 37 and make every cosine look perfect)."""

    def __init__(self, classes: int = 37, hidden: int = 128):
        super().__init__()

        def block(cin, cout, pool):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(pool)]

        self.features = nn.Sequential(*block(1, 32, 2), *block(32, 64, 2), *block(64, 128, (2, 1)),
                                      *block(128, 128, (4, 1)))
        self.rnn = nn.LSTM(128, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, image):
        seq = self.features(image).squeeze(2).permute(0, 2, 1)  # B, T, C
        out, _ = self.rnn(seq)
        return self.head(out)


CRNN_CACHE = os.path.expanduser("~/.cache/edgekit/benchmarks/crnn_digits.pt")
TRAIN_DIGITS = 1400  # scikit-learn digits [0, 1400) train the recognizer; the rest make the lines converted


def crnn() -> CRNN:
    """The recognizer trained on digit strings (cached; a few minutes of CPU the first time)."""
    torch.manual_seed(0)
    model = CRNN()
    if not os.path.exists(CRNN_CACHE):
        train_crnn(model)
        os.makedirs(os.path.dirname(CRNN_CACHE), exist_ok=True)
        torch.save(model.state_dict(), CRNN_CACHE)
    model.load_state_dict(torch.load(CRNN_CACHE, weights_only=True))
    return model.eval()


def train_crnn(model: CRNN, steps: int = 700, batch: int = 32) -> float:
    """CTC on lines of four training digits (class d + 1; 0 is the blank); returns the last loss."""
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    loss = torch.tensor(0.0)
    for step in range(steps):
        images, labels = digit_lines(batch, 100 + step, train=True, labels=True)
        logits = model(torch.from_numpy(images)).log_softmax(-1).permute(1, 0, 2)  # T, B, C
        loss = ctc(logits, torch.from_numpy(labels + 1), torch.full((batch,), logits.shape[0]), torch.full((batch,), 4))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return float(loss)


def line_accuracy(model: CRNN, count: int = 200) -> float:
    """Share of held-out lines whose greedy CTC decoding is exactly the four digits."""
    images, labels = digit_lines(count, 7, labels=True)
    with torch.no_grad():
        best = model(torch.from_numpy(images)).argmax(-1).numpy()
    right = 0
    for path, truth in zip(best, labels):
        decoded = [int(s) - 1 for i, s in enumerate(path) if s != 0 and (i == 0 or s != path[i - 1])]
        right += decoded == list(truth)
    return right / count


def digit_lines(count: int, seed: int, train: bool = False, labels: bool = False):
    """count x 1 x 32 x 128 float32 in [0, 1]: four scikit-learn handwritten digits side by side
    (held-out digits unless ``train``); with ``labels``, also the count x 4 digit labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    span = slice(0, TRAIN_DIGITS) if train else slice(TRAIN_DIGITS, None)
    digits, targets = data.images[span] / 16.0, data.target[span]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(digits), size=(count, 4))
    tiles = np.kron(digits[picks], np.ones((4, 4)))  # count x 4 x 32 x 32
    images = np.concatenate(list(tiles.transpose(1, 0, 2, 3)), axis=2)[:, None].astype(np.float32)
    return (images, targets[picks].astype(np.int64)) if labels else images


class ScanBiLSTM(nn.Module):
    """The packed LSTM with its time loop as ``torch.ops.higher_order.scan`` instead of unrolled: the
    route measured against edgekit's (a loop in the program; see ``run_lstm``)."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        from edgekit.targets.executorch.recurrent import pack_weights

        params = [p.detach() for p in lstm._flat_weights]
        layers = pack_weights(params, lstm.bias, lstm.num_layers, 2, lstm.input_size)
        self.hidden = lstm.hidden_size
        self.layers = nn.ParameterList(nn.Parameter(w, requires_grad=False) for layer in layers for w in layer.values())

    def forward(self, x):  # x: B, T, C (batch first) -> B, T, 2H
        from torch._higher_order_ops.scan import scan

        hidden, seq = self.hidden, x.transpose(0, 1)
        batch = seq.shape[1]
        for index in range(len(self.layers) // 5):
            w_f, w_b, b_f, b_b, w_hh = list(self.layers)[5 * index:5 * index + 5]
            xs = torch.stack([F_linear(seq, w_f, b_f), F_linear(seq.flip(0), w_b, b_b)], dim=1)  # T, 2, B, 4H

            def step(carry, gates_in, w_hh=w_hh):
                h, c = carry
                gates = gates_in + torch.bmm(h, w_hh)
                sig, tanh = torch.sigmoid(gates), torch.tanh(gates)
                c = sig[..., hidden:2 * hidden] * c + sig[..., 0:hidden] * tanh[..., 3 * hidden:]
                h = sig[..., 2 * hidden:3 * hidden] * torch.tanh(c)
                return (h.clone(), c.clone()), h.clone()

            zeros = torch.zeros(2, batch, hidden, dtype=x.dtype)
            _, ys = scan(step, (zeros, zeros.clone()), xs)  # T, 2, B, H
            seq = torch.cat([ys[:, 0], ys[:, 1].flip(0)], dim=-1)
        return seq.transpose(0, 1)


def F_linear(x, weight, bias):
    return torch.nn.functional.linear(x, weight, bias)


class _ScanRNN(nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.inner = ScanBiLSTM(lstm)

    def forward(self, x):
        return self.inner(x), None


def crnn_scan() -> CRNN:
    """The trained recognizer with its BiLSTM as a scan loop (same weights, same function)."""
    model = crnn()
    model.rnn = _ScanRNN(model.rnn)
    return model.eval()


def decoder_step():
    """The decoder step of benchmarks.decoder_model, with the fortunes-trained weights when cached."""
    from benchmarks import decoder_model as dm

    step = dm.step_small()
    weights = os.path.join(DECODER_WORK, "decoder_lm_400.pt")
    if os.path.exists(weights):
        gpt = dm.TinyGPT(dm.SMALL)
        gpt.load_state_dict(torch.load(weights, weights_only=True))
        step = dm.DecodeStep(gpt)
    return step.eval()


# --- families: (factory, inputs, calibration .npz, evaluation .npz, notes) ------------------------------

def _family(name: str, work: str) -> dict:
    cal, ev = os.path.join(work, f"{name}_calibration.npz"), os.path.join(work, f"{name}_evaluation.npz")
    if name == "crnn":
        np.savez(cal, image=digit_lines(16, 1))
        np.savez(ev, image=digit_lines(32, 2))
        return {"title": "CRNN (conv + 2-layer BiLSTM + CTC head, 0.9M params, trained here on digit strings)",
                "factory": "benchmarks.families:crnn", "inputs": [CRNN_INPUT], "calibration": cal, "eval": ev}
    if name == "decoder":
        from benchmarks import decoder_model as dm

        steps = os.path.join(DECODER_WORK, "steps.npz")
        trained = os.path.exists(os.path.join(DECODER_WORK, "decoder_lm_400.pt")) and os.path.exists(steps)
        if not trained:
            from benchmarks.decoder_lm import corpus

            text = corpus()[1][:96]
            np.savez(steps, **dm.step_inputs(decoder_step(), text))
        return {"title": "decoder step (GPT, 1.9M params, KV cache as I/O" + (", fortunes-trained)" if trained else ", random)"),
                "factory": "benchmarks.families:decoder_step", "inputs": dm.input_specs(dm.SMALL),
                "calibration": steps, "eval": steps}
    from benchmarks.suite import cases

    build = cases.efficientnet if name == "efficientnet" else cases.minilm
    # calibration: the quick case's (what int8 costs stays as measured); evaluation: the full case's larger
    # set, less any input that is also a calibration input (a photo's centre view is in both sets)
    case, full = build(quick=True), build(quick=False)
    np.savez(cal, **case.calibration)
    first = case.input_names[0]
    seen = {row.tobytes() for row in case.calibration[first]}
    keep = np.array([row.tobytes() not in seen for row in full.evaluation[first]])
    np.savez(ev, **{k: v[keep][:EVAL_SAMPLES[name]] for k, v in full.evaluation.items()})
    return {"title": case.title, "factory": case.factory, "inputs": case.inputs, "calibration": cal, "eval": ev}


def _warm(target: str, out: str) -> None:
    """One tiny conversion so that the cell times below exclude the target's first imports."""
    import edgekit

    edgekit.convert(model_factory="tests.models:small_cnn", target=target, inputs=["x:1x3x32x32"],
                    output_dir=out, overwrite=True)


def _cell(family: dict, target: str, precision: str, out: str, eval_samples: int) -> dict:
    import edgekit

    start = time.perf_counter()
    try:
        art = edgekit.convert(model_factory=family["factory"], target=target, quantize=precision,
                              inputs=family["inputs"], calibration=family["calibration"], eval_data=family["eval"],
                              eval_samples=eval_samples, output_dir=out, overwrite=True)[0]
    except Exception as exc:  # a cell records what the user would read, then the matrix goes on
        return {"status": "error", "seconds": round(time.perf_counter() - start, 1),
                "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:400] if str(exc).strip() else ''}",
                "trace": traceback.format_exc().splitlines()[-3:]}
    details = (art.manifest or {}).get("target_details", {})
    delegation = details.get("delegation") or {}
    quantization = details.get("quantization") or {}
    route = ((details.get("lowering") or {}).get("route") or (quantization.get("lstm") or {}).get("route")
             or (quantization.get("recurrent") or {}).get("route") or details.get("conversion_route"))
    parity = art.parity or {}
    timing = _int8_timing(art.manifest or {})
    return {**timing,
        "status": art.status, "seconds": round(time.perf_counter() - start, 1), "bytes": art.size_bytes,
        "cosine": parity.get("cosine"), "top1": parity.get("top1"),
        "eval_samples": eval_samples, "confident_samples": parity.get("confident_samples"),
        "delegated_percent": delegation.get("delegated_percent"), "route": route,
        "error": art.error, "reasons": (art.parity or {}).get("reasons"),
    }


def _nested(block, key: str):
    """The first value under ``key`` in a manifest's nested dicts."""
    if isinstance(block, dict):
        if key in block:
            return block[key]
        for value in block.values():
            found = _nested(value, key)
            if found is not None:
                return found
    return None


def _int8_timing(manifest: dict) -> dict:
    """Where a static int8 conversion's time went: seconds per calibration recipe tried, and the
    mixed-precision search (what the manifest records)."""
    out = {}
    candidates = _nested(manifest.get("target_details"), "candidates")
    if isinstance(candidates, list) and candidates:
        out["int8_candidates"] = {c.get("name"): c.get("seconds") for c in candidates if isinstance(c, dict)}
    mixed = _nested(manifest.get("quantization"), "mixed_precision")
    if isinstance(mixed, dict):
        out["mixed_precision"] = {k: mixed.get(k) for k in ("searched", "met", "shipped", "seconds")}
    return out


def run_matrix(families: list[str], targets: list[str], eval_samples: int | None,
               precisions: tuple[str, ...] = PRECISIONS) -> None:
    from edgekit.registry import get_target_class

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)  # eager verification under the shared machine's load (see benchmarks/suite)
    results = _load(MATRIX_JSON)
    results.setdefault("cells", {})
    results["command"] = "python -m benchmarks.families matrix"
    results["eval_samples"] = {**results.get("eval_samples", {}),
                               **{name: eval_samples or EVAL_SAMPLES[name] for name in families}}
    command = " ".join(["python -m benchmarks.families matrix", *sys.argv[2:]])
    results["runs"] = [r for r in results.get("runs", []) if not r.startswith(command + "  (")] + [command]
    with tempfile.TemporaryDirectory() as work:
        installed = [t for t in targets if get_target_class(t).available()]
        for target in installed:
            _warm(target, os.path.join(work, "warm"))
        for name in families:
            family = _family(name, work)
            results.setdefault("titles", {})[name] = family["title"]
            for target in installed:
                for precision in [p for p in precisions if p in get_target_class(target).precisions]:
                    cell = _cell(family, target, precision, os.path.join(work, "out"), eval_samples or EVAL_SAMPLES[name])
                    results["cells"][f"{name}|{target}|{precision}"] = cell
                    print(name, target, precision, json.dumps({k: v for k, v in cell.items() if k != "trace"}), flush=True)
                    # merged into the file as it is now: another run may have written other cells meanwhile
                    latest = _load(MATRIX_JSON)
                    latest.setdefault("cells", {})[f"{name}|{target}|{precision}"] = cell
                    for key in ("command", "runs", "eval_samples", "titles"):
                        latest[key] = results[key] if key != "titles" else {**latest.get(key, {}), **results[key]}
                    _save(MATRIX_JSON, latest)
    write_section()


def run_confident(families: list[str], eval_samples: int | None) -> None:
    """How many evaluation inputs of each family FP32 is confident on (edgekit.verify's rule), at a few
    sample counts: what EVAL_SAMPLES is chosen from."""
    import importlib

    from edgekit.verify_roles import confident_rows

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as work:
        for name in families:
            family = _family(name, work)
            module, _, function = family["factory"].partition(":")
            model = getattr(importlib.import_module(module), function)().eval()
            data = np.load(family["eval"])
            names = [spec.split(":")[0] for spec in family["inputs"]]
            count = min(len(data[names[0]]), eval_samples or EVAL_SAMPLES[name])
            with torch.no_grad():
                outputs = [model(*(torch.from_numpy(data[n][i:i + 1]) for n in names)) for i in range(count)]
            first = [o[0] if isinstance(o, (tuple, list)) else o for o in outputs]
            rows = torch.cat([o.reshape(-1, o.shape[-1]) for o in first]).double().numpy()
            per_input = len(rows) // count  # verify counts rows: a CRNN line has one per time step
            confident = confident_rows(rows, "logits")
            marks = [k for k in (8, 16, 32, 64, 128, 200) if k <= count]
            print(f"{name}: {count} evaluation inputs x {per_input} class rows; confident rows: {int(confident.sum())}; "
                  "in the first N inputs: " +
                  ", ".join(f"{k}: {int(confident[:k * per_input].sum())}" for k in marks), flush=True)


# --- the LSTM's ExecuTorch conversion cost --------------------------------------------------------------

def _latency_ms(target: str, path: str, sample: list, runs: int = 30) -> float:
    from edgekit.registry import get_target

    runtime = get_target(target).runtime().load(path, threads=1)
    runtime.run(sample)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runtime.run(sample)
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 2)


def _scan_row(work: str, sample: list) -> dict:
    """The scan route, lowered with executorch's own API (export, XNNPACK partitioner, .pte) and
    checked against eager PyTorch on one sample."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from edgekit.targets.executorch import report

    model, x = crnn_scan(), torch.from_numpy(sample[0])
    start = time.perf_counter()
    edge = to_edge_transform_and_lower(torch.export.export(model, (x,), strict=False),
                                       partitioner=[XnnpackPartitioner()],
                                       compile_config=EdgeCompileConfig(_check_ir_validity=False))
    delegation = report.from_edge_program(edge, "xnnpack")
    path = os.path.join(work, "scan.pte")
    with open(path, "wb") as fh:
        edge.to_executorch().write_to_file(fh)
    seconds = time.perf_counter() - start
    got = torch.from_numpy(np.asarray(_runtime_output(path, sample)))
    with torch.no_grad():
        want = crnn()(x)
    cosine = float(torch.nn.functional.cosine_similarity(got.flatten().double(), want.flatten().double(), dim=0))
    return {"label": "ExecuTorch, scan loop (not taken; lowered directly, no verification pass)", "target": "executorch",
            "seconds": round(seconds, 1), "status": "ran", "cosine": cosine, "bytes": os.path.getsize(path),
            "nodes": delegation["nodes"], "delegated_percent": delegation["delegated_percent"],
            "portable": [f"{p['op']} x{p['count']}" for p in delegation["portable_ops"]][:6],
            "route": "torch.ops.higher_order.scan", "latency_ms": _latency_ms("executorch", path, sample)}


def _runtime_output(path: str, sample: list):
    from edgekit.registry import get_target

    return get_target("executorch").runtime().load(path, threads=1).run(sample)[0]


def run_lstm() -> None:
    import edgekit
    from edgekit.targets.executorch import recurrent

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    packed = recurrent.pack_recurrent_layers
    rows = []
    with tempfile.TemporaryDirectory() as work:
        sample = [digit_lines(1, 3)]
        for target in ("tflite", "executorch"):
            _warm(target, os.path.join(work, "warm"))
        for label, target, route, factory in (
            ("TFLite", "tflite", None, "crnn"),
            ("ExecuTorch, PyTorch's decomposition", "executorch", "default", "crnn"),
            ("ExecuTorch, packed LSTM (edgekit's route)", "executorch", "packed", "crnn"),
        ):
            recurrent.pack_recurrent_layers = (lambda program, **_: (None, {})) if route == "default" else packed
            try:
                start = time.perf_counter()
                art = edgekit.convert(model_factory=f"benchmarks.families:{factory}", target=target, inputs=[CRNN_INPUT],
                                      output_dir=os.path.join(work, label[:6]), overwrite=True, eval_samples=8)[0]
                seconds = time.perf_counter() - start
            finally:
                recurrent.pack_recurrent_layers = packed
            details = art.manifest["target_details"]
            delegation = details.get("delegation", {})
            rows.append({"label": label, "target": target, "seconds": round(seconds, 1), "status": art.status,
                         "cosine": art.parity.get("cosine"), "bytes": art.size_bytes,
                         "nodes": delegation.get("nodes"), "delegated_percent": delegation.get("delegated_percent"),
                         "portable": [f"{p['op']} x{p['count']}" for p in delegation.get("portable_ops", [])],
                         "route": (details.get("lowering") or {}).get("route"),
                         "latency_ms": _latency_ms(target, art.path, sample)})
            print(json.dumps(rows[-1]), flush=True)
        rows.insert(2, _scan_row(work, sample))  # edgekit's FLOP counter cannot run a scan: lowered directly
        print(json.dumps(rows[2]), flush=True)
    model = crnn()
    _save(LSTM_JSON, {"command": "python -m benchmarks.families lstm", "rows": rows,
                      "line_accuracy": line_accuracy(model)})
    write_section()


# --- results -------------------------------------------------------------------------------------------

def _load(path: str) -> dict:
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    return {}


def _save(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def write_section() -> None:
    from benchmarks.families_report import render

    text = render(_load(LSTM_JSON), _load(MATRIX_JSON))
    os.makedirs(os.path.dirname(SECTION), exist_ok=True)
    with open(SECTION, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.families", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("lstm", "matrix", "render", "confident"))
    parser.add_argument("--families", default="crnn,decoder,efficientnet,minilm")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--eval-samples", type=int, default=None, help="default: EVAL_SAMPLES per family")
    args = parser.parse_args(argv)
    if args.mode == "lstm":
        run_lstm()
    elif args.mode == "matrix":
        run_matrix(args.families.split(","), args.targets.split(","), args.eval_samples, tuple(args.precisions.split(",")))
    elif args.mode == "confident":
        run_confident(args.families.split(","), args.eval_samples)
    else:
        write_section()


if __name__ == "__main__":
    sys.exit(main())
