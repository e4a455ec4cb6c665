"""--eval-data is used whole; a cut is said (loudly when edgekit chose it for memory)."""
from __future__ import annotations

import io

import numpy as np

from edgekit.options import ConvertOptions, InputSpec
from edgekit.pipeline import _read_data
from edgekit.ui import Reporter

SPECS = [InputSpec.parse("x:1x16")]
PLAN: list = []  # no int8 target: no calibration needed


def _read(tmp_path, count, **options):
    path = tmp_path / "eval.npy"
    np.save(path, np.random.default_rng(0).standard_normal((count, 1, 16)).astype(np.float32))
    stream = io.StringIO()
    _, samples = _read_data(SPECS, ConvertOptions(eval_data=str(path), **options), PLAN, Reporter(stream=stream))
    return samples, stream.getvalue()


def test_every_eval_sample_is_used_by_default(tmp_path):
    samples, said = _read(tmp_path, 120)
    assert len(samples) == 120 and said == ""


def test_a_cut_for_memory_is_a_warning_with_the_count_left_out(tmp_path, monkeypatch):
    import edgekit.options

    # a machine whose half-memory holds 100 calibration samples and 30 eval samples of 64 bytes
    monkeypatch.setattr(edgekit.options, "_memory_bytes", lambda: 2 * 64 * 130)
    samples, said = _read(tmp_path, 120)
    assert len(samples) == 30
    assert said.strip() == (
        "warning: --eval-data holds 120 samples; verifying on the first 30, as many as fit in half of this "
        "machine's memory (90 left out; --eval-samples N chooses)"
    )


def test_without_eval_data_the_default_is_32_random_samples():
    _, samples = _read_data(SPECS, ConvertOptions(), PLAN, Reporter(quiet=True))
    assert len(samples) == 32 and not samples.real


def test_a_pipeline_file_declares_roles_and_state_like_the_flags():
    import pytest

    from edgekit.commands.run import convert_kwargs
    from edgekit.errors import UsageError
    from edgekit.pipeline_file import parse

    pipeline = parse({"convert": {"model": "m.pt"},
                      "verify": {"output_roles": {"boxes": "regression"}, "state": {"h_n": "h0"}, "state_steps": 4}},
                     "/tmp/pipeline.toml")
    kwargs = convert_kwargs(pipeline.convert, pipeline.verify, "edgekit run pipeline.toml")
    for key in ("inputs", "arch", "trust_pickle"):  # convert()'s own arguments, not ConvertOptions fields
        kwargs.pop(key)
    options = ConvertOptions(**kwargs)
    assert (options.output_roles, options.state, options.state_steps) == ((("boxes", "regression"),), (("h_n", "h0"),), 4)
    with pytest.raises(UsageError, match=r"\[verify\] output_roles must be a table of NAME = \"VALUE\" strings"):
        parse({"verify": {"output_roles": {"boxes": 3}}}, "/tmp/pipeline.toml")
    with pytest.raises(UsageError, match="--output-role boxes=bbox: unknown role"):
        ConvertOptions(output_roles={"boxes": "bbox"})
