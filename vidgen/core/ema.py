"""Exponential moving average of network weights, with a half-life counted in training videos."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(halflife_videos: float, videos_per_step: int, videos_seen: int,
              rampup: float | None = None) -> float:
    """Per-step decay beta such that beta^(steps per half-life) = 1/2.

    Counting the half-life in videos (as StyleGAN2-ADA counts kimg) makes the average independent of batch
    size and GPU count: beta = 0.5 ** (videos_per_step / halflife). With `rampup`, the half-life is capped at
    rampup x videos seen, so the early average tracks the fast-changing model.
    """
    halflife = halflife_videos
    if rampup is not None:
        halflife = min(halflife, rampup * videos_seen)
    if halflife <= 0:
        return 0.0
    return 0.5 ** (videos_per_step / halflife)


def make_ema(network: nn.Module) -> nn.Module:
    """A frozen copy of `network` in eval mode, to hold the averaged weights."""
    ema = copy.deepcopy(network).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, network: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * network, for parameters; buffers are copied."""
    ema_params = list(ema.parameters())
    net_params = [p.detach() for p in network.parameters()]
    torch._foreach_lerp_(ema_params, net_params, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), network.buffers()):
        ema_buffer.copy_(buffer)
