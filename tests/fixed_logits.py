"""A module whose logits are given per pixel, for scoring tests with known answers."""

import torch


class Fixed(torch.nn.Module):
    """Logits [B, K, 1, W] of a 1-row image: `logits[w][k]` is class k's logit at pixel w."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32).t()[None, :, None, :]

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1, -1, -1)
