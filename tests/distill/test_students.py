"""Auto students: fewer transformer layers (initialised from the teacher), narrower CNNs/MLPs, refusals."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgekit.distill.students import auto_student, make_student, parse_keep_layers
from edgekit.errors import EXIT_USAGE, UsageError
from tests import models


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_keep_layers_every_kth_keeps_the_last_layer():
    assert parse_keep_layers("2", 6) == [1, 3, 5]
    assert parse_keep_layers(3, 12) == [2, 5, 8, 11]
    assert parse_keep_layers("0,2,5", 6) == [0, 2, 5]


@pytest.mark.parametrize("text, message", [
    ("1", "keeps all 6 layers"),
    ("0,7", "layers 0..5"),
    ("two", "expected k"),
])
def test_keep_layers_rejects_bad_values(text, message):
    with pytest.raises(UsageError, match=message):
        parse_keep_layers(text, 6)


def test_auto_narrows_a_cnn_and_keeps_the_teachers_strongest_filters():
    teacher = models.small_cnn()
    example = (torch.randn(1, 3, 32, 32),)
    student = auto_student(teacher, example, width=0.5)
    s = student.module
    assert s.features[0].out_channels == 8 and s.features[3].out_channels == 16
    assert s.features[1].num_features == 8 and s.features[4].num_features == 16  # BatchNorm follows
    assert s.head.in_features == 16 and s.head.out_features == 10  # the output keeps its width
    assert s(*example).shape == teacher(*example).shape
    # the kept filters are the teacher's own (largest L1 norm), with their BatchNorm statistics
    norms = teacher.features[0].weight.abs().sum(dim=(1, 2, 3))
    kept = torch.sort(torch.topk(norms, 8).indices).values
    torch.testing.assert_close(s.features[0].weight, teacher.features[0].weight[kept])
    torch.testing.assert_close(s.features[1].running_mean, teacher.features[1].running_mean[kept])
    assert _params(teacher) / _params(s) > 3.0
    assert student.hidden_pairs == [("features.0", "features.0"), ("features.3", "features.3")]


def test_auto_narrows_linear_after_flatten_by_channel_blocks():
    from edgekit.demo import digits_cnn

    teacher = digits_cnn().eval()
    example = (torch.randn(1, 1, 8, 8),)
    s = auto_student(teacher, example, width=0.5).module
    assert s[8].in_features == 16 * 4 * 4  # 16 of 32 channels x 4x4 positions
    assert s(*example).shape == (1, 10)


def test_auto_drops_layers_of_nn_transformer_encoder():
    teacher = models.tiny_transformer()
    example = (torch.randn(1, 16, 32),)
    student = auto_student(teacher, example, keep_layers=2)
    s = student.module
    assert len(s.encoder.layers) == 1 and s.encoder.num_layers == 1
    torch.testing.assert_close(s.encoder.layers[0].linear1.weight, teacher.encoder.layers[1].linear1.weight)
    assert student.hidden_pairs == [("encoder.layers.1", "encoder.layers.0")]
    assert s(*example).shape == (1, 8)


def test_auto_drops_layers_of_a_hugging_face_bert(tiny_bert_folder):
    from edgekit.distill.teacher import load_teacher

    teacher = load_teacher(tiny_bert_folder, max_length=8)
    assert [s.name for s in teacher.specs] == ["input_ids", "attention_mask"]
    example = (torch.randint(5, 20, (1, 8)), torch.ones(1, 8, dtype=torch.long))
    student = auto_student(teacher.module, example, keep_layers=2)
    bert_t, bert_s = teacher.module.model, student.module.model
    assert len(bert_s.encoder.layer) == 2 and bert_s.config.num_hidden_layers == 2
    assert bert_t.config.num_hidden_layers == 4  # the teacher is untouched
    # DistilBERT initialisation: embeddings and the kept layers come from the teacher
    torch.testing.assert_close(bert_s.embeddings.word_embeddings.weight, bert_t.embeddings.word_embeddings.weight)
    torch.testing.assert_close(bert_s.encoder.layer[1].output.dense.weight, bert_t.encoder.layer[3].output.dense.weight)
    assert student.module(*example).shape == (1, 32)
    assert "layers 1,3 of 4" in student.description


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = h + self.conv2(h)
        return self.head(h.mean(dim=(2, 3)))


def residual():
    return Residual().eval()


def test_auto_refuses_a_residual_cnn_naming_the_node():
    with pytest.raises(UsageError) as info:
        auto_student(residual(), (torch.randn(1, 3, 8, 8),))
    message = str(info.value)
    assert "--student auto cannot shrink Residual" in message
    assert "'add'" in message and "residual add" in message
    assert "--student package.module:factory" in message
    assert info.value.exit_code == EXIT_USAGE


def test_auto_refuses_grouped_convolutions():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 3)).eval()
    with pytest.raises(UsageError, match="grouped convolution"):
        auto_student(model, (torch.randn(1, 4, 8, 8),))


def test_factory_student_is_checked_against_the_teachers_inputs():
    with pytest.raises(Exception, match="the student rejects the teacher's inputs"):
        make_student("tests.models:mlp", models.small_cnn(), (torch.randn(1, 3, 32, 32),))
