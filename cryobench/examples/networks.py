"""The per-hole networks of the Tianshou and TorchRL examples, in plain PyTorch (no library's base class).

One MLP embeds every hole's feature row; :class:`HoleScores` turns each embedding into one
number (the logits over holes), :class:`PooledValue` pools the embeddings over holes (mean and
max) into the state's value. No weight depends on the number of holes.
"""

from __future__ import annotations

import torch
from torch import nn

from cryobench.features import N_FEATURES


def hole_embedding(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(N_FEATURES, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())


class HoleScores(nn.Module):
    """(..., N, F) features -> (..., N) logits."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.embed = hole_embedding(width)
        self.score = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))
        nn.init.zeros_(self.score[-1].weight)  # uniform over the allowed holes at first

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.score(self.embed(features)).squeeze(-1)


class PooledValue(nn.Module):
    """(..., N, F) features -> (..., 1) value."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.embed = hole_embedding(width)
        self.value = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        embedded = self.embed(features)
        return self.value(torch.cat([embedded.mean(-2), embedded.amax(-2)], -1))
