"""TorchScript archives that keep state between calls (a voice-activity model assigning self.h /
self.c in forward): PyTorch's TorchScript-to-export converter failed on them with its own internal
assert or node error. edgekit names the state attributes and says what to save instead (exit 5)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import edgekit
from edgekit.errors import ConversionError


class StatefulVAD(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(16, 32, batch_first=True)
        self.fc = nn.Linear(32, 1)
        self.h = torch.zeros(1, 1, 32)
        self.c = torch.zeros(1, 1, 32)

    def forward(self, x):
        out, (h, c) = self.lstm(x, (self.h, self.c))
        self.h = h
        self.c = c
        return torch.sigmoid(self.fc(out[:, -1]))


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.vad = StatefulVAD()

    def forward(self, x):
        return self.vad(x)


@pytest.mark.parametrize("cls, names", [(StatefulVAD, "h, c"), (Wrapper, "vad.h, vad.c")])
def test_stateful_torchscript_names_the_state_and_the_route(tmp_path, cls, names):
    torch.manual_seed(0)
    path = tmp_path / "vad.pt"
    torch.jit.script(cls().eval()).save(str(path))
    with pytest.raises(ConversionError) as info:
        edgekit.convert(model=str(path), target="onnx", inputs=["x:1x10x16"], output_dir=str(tmp_path / "out"))
    message = str(info.value)
    assert message.startswith(f"the TorchScript archive keeps state between calls in attribute(s) {names} (assigned in forward)")
    assert "forward(x, h, c) -> (y, h, c)" in info.value.hint and "--state OUT=IN" in info.value.hint
    assert info.value.exit_code == 5


def test_stateless_torchscript_archive_still_converts(tmp_path):
    from edgekit.export import torchscript_state_attributes

    torch.manual_seed(0)
    scripted = torch.jit.script(nn.Sequential(nn.Linear(16, 8), nn.ReLU()).eval())
    assert torchscript_state_attributes(scripted) == []
    path = tmp_path / "mlp.pt"
    scripted.save(str(path))
    art = edgekit.convert(model=str(path), target="onnx", inputs=["x:1x16"], output_dir=str(tmp_path / "out"))[0]
    assert art.status == "passed" and art.parity["cosine"] >= 0.9999
