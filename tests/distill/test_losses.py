"""Each distillation loss against its formula, and the learned projection of the hidden-state loss."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edgekit.distill.losses import (
    LossConfig,
    distillation_loss,
    embedding_loss,
    feature_axis,
    hard_label_ce,
    make_projections,
    soft_target_kl,
)
from edgekit.errors import UsageError


def test_soft_target_kl_is_t_squared_times_kl_of_tempered_softmaxes():
    torch.manual_seed(0)
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    T = 3.0
    p_t = F.softmax(t / T, dim=-1)
    expected = (p_t * (p_t.log() - F.log_softmax(s / T, dim=-1))).sum(-1).mean() * T * T
    assert soft_target_kl(s, t, T).item() == pytest.approx(expected.item(), rel=1e-5)
    assert soft_target_kl(t, t, T).item() == pytest.approx(0.0, abs=1e-6)


def test_hard_label_cross_entropy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert hard_label_ce(logits, torch.tensor([0, 1])).item() == pytest.approx(expected, rel=1e-6)


def test_alpha_mixes_soft_and_hard_terms():
    torch.manual_seed(1)
    s, t, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    config = LossConfig(output="kl", temperature=2.0, alpha=0.25)
    total, parts = distillation_loss(config, [s], [t], y)
    expected = 0.25 * soft_target_kl(s, t, 2.0) + 0.75 * hard_label_ce(s, y)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {"kl", "ce"}
    unlabelled, parts = distillation_loss(config, [s], [t], None)
    assert unlabelled.item() == pytest.approx(soft_target_kl(s, t, 2.0).item(), rel=1e-6)
    assert set(parts) == {"kl"}


def test_embedding_losses():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 4.0]])
    assert embedding_loss(a, b, "mse").item() == pytest.approx((1 + 1 + 0 + 4) / 4)
    # cosine: first pair orthogonal (1 - 0), second parallel (1 - 1)
    assert embedding_loss(a, b, "cosine").item() == pytest.approx(0.5)


def test_hidden_loss_projects_student_width_to_teacher_width_and_trains_the_projection():
    torch.manual_seed(2)
    s_hidden = {"s.layer": torch.randn(2, 8, 6, 6, requires_grad=True)}
    t_hidden = {"t.layer": torch.randn(2, 16, 6, 6)}
    pairs = [("t.layer", "s.layer")]
    projections = make_projections(s_hidden, t_hidden, pairs)
    assert list(projections) == ["s__layer"]
    assert tuple(projections["s__layer"].linear.weight.shape) == (16, 8)
    config = LossConfig(output="kl", hidden="mse", hidden_weight=2.0)
    s_out, t_out = torch.randn(2, 4), torch.randn(2, 4)
    total, parts = distillation_loss(config, [s_out], [t_out], None, s_hidden, t_hidden, pairs, projections)
    projected = projections["s__layer"](s_hidden["s.layer"])
    assert projected.shape == (2, 16, 6, 6)
    expected = soft_target_kl(s_out, t_out, 4.0) + 2.0 * F.mse_loss(projected, t_hidden["t.layer"])
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    total.backward()
    assert projections["s__layer"].linear.weight.grad.abs().sum() > 0


def test_same_width_hidden_states_need_no_projection():
    h = {"a": torch.randn(2, 5, 32)}
    assert len(make_projections(h, {"b": torch.randn(2, 5, 32)}, [("b", "a")])) == 0
    assert feature_axis((2, 5, 32), (2, 5, 64)) == 2
    assert feature_axis((2, 8, 4, 4), (2, 8, 4, 4)) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"output": "kld"}, "--loss 'kld'"),
    ({"temperature": 0}, "--temperature"),
    ({"alpha": 1.5}, "--alpha 1.5"),
    ({"hidden": "l1"}, "--hidden-loss 'l1'"),
])
def test_loss_config_names_the_bad_option(kwargs, message):
    with pytest.raises(UsageError, match=message):
        LossConfig(**kwargs)
