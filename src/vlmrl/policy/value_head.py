"""The critic: an MLP on the final hidden state of the last prompt token.

The paper's head is 4096 -> 1024 -> 512 -> 1 with ReLU on LLaVA-7B; here the widths scale
with the model (hidden/4, hidden/8), so a tiny model gets a tiny head. It always runs in
float32, whatever the model's dtype, and starts with outputs near zero so that the first
advantages are not dominated by a random critic.
"""

from __future__ import annotations

import torch
from torch import nn


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        first, second = max(hidden_size // 4, 8), max(hidden_size // 8, 4)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, first), nn.ReLU(), nn.Linear(first, second), nn.ReLU(), nn.Linear(second, 1)
        )
        last = self.mlp[-1]
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)
        self.float()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values of shape (batch,) from hidden states of shape (batch, hidden)."""
        return self.mlp(hidden.float()).squeeze(-1)
