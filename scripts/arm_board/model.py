"""The model the ARM board run converts: a small CNN over 8x8 one-channel images (the shape of
scikit-learn's digits), random weights. The run checks the remote path, the ARM wheels and the
record, not accuracy, so nothing needs training here."""
import torch


def build() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 10),
    ).eval()
