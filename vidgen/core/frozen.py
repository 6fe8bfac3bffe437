"""A network that a model uses but does not train (the first stage of a two-stage family)."""

from __future__ import annotations

from typing import Any

from torch import nn


class Frozen(nn.Module):
    """Wraps `network` without gradients and always in eval mode: a parent's .train() does not reach it, so
    BatchNorm statistics and dropout stay as trained (the official VideoGPT left its VQ-VAE in train mode while
    training the prior; its users found out). Its weights stay in the parent's state dict, so a checkpoint
    embeds them."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> Frozen:
        del mode
        return super().train(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.network(*args, **kwargs)
