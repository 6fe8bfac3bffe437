"""The one layout convention: uint8 [B, T, H, W, C] at the IO boundary <-> float [B, C, T, H, W] in [-1, 1]."""

import numpy as np
import pytest
import torch

from vidgen.core import layout
from vidgen.errors import UserError

FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def every_pixel_value() -> torch.Tensor:
    """All 256 uint8 values, spread over every axis of a [B, T, H, W, C] batch."""
    return torch.arange(256, dtype=torch.uint8).reshape(2, 4, 4, 2, 4)  # (B, T, H, W, C)


@pytest.mark.parametrize("dtype", FLOATS)
def test_round_trip_is_exact_for_all_256_values(dtype):
    videos = every_pixel_value()
    model = layout.to_model(videos, dtype)
    assert model.dtype == dtype
    assert torch.equal(layout.to_uint8(model), videos)


def test_to_model_maps_0_255_onto_minus_one_one_linearly():
    model = layout.to_model(torch.arange(256, dtype=torch.uint8).reshape(1, 256, 1, 1, 1), torch.float64)
    expected = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0  # x = v / 127.5 - 1
    assert (model.flatten() - expected).abs().max().item() < 1e-15
    assert model.flatten()[0].item() == -1.0 and model.flatten()[-1].item() == 1.0  # the ends are exact
    assert model.dtype == torch.float64


def test_to_model_default_dtype_is_float32():
    assert layout.to_model(torch.zeros(1, 2, 3, 3, 3, dtype=torch.uint8)).dtype == torch.float32


def test_axes_go_where_the_convention_says():
    B, T, H, W, C = 2, 3, 4, 5, 3
    videos = torch.randint(0, 256, (B, T, H, W, C), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    model = layout.to_model(videos)
    assert model.shape == (B, C, T, H, W)
    for b, t, h, w, c in [(0, 0, 0, 0, 0), (1, 2, 3, 4, 2), (1, 0, 2, 1, 1), (0, 2, 0, 4, 1)]:
        assert model[b, c, t, h, w].item() == pytest.approx(videos[b, t, h, w, c].item() / 127.5 - 1.0)
    back = layout.to_uint8(model)
    assert back.shape == (B, T, H, W, C) and back.dtype == torch.uint8
    # Writers and .numpy() consumers get a plain [B, T, H, W, C] buffer, also from a model's own output, which is
    # contiguous in [B, C, T, H, W] (to_model's result happens to be strided like [B, T, H, W, C] already).
    assert layout.to_uint8(model.contiguous()).is_contiguous()


def test_to_uint8_clamps_out_of_range_values():
    model = torch.tensor([-5.0, -1.0001, 1.0001, 5.0, float("-inf"), float("inf")]).reshape(1, 1, 6, 1, 1)
    pixels = layout.to_uint8(model).flatten().tolist()  # (B, C=1, T=6, 1, 1) -> 6 pixels
    assert pixels == [0, 0, 255, 255, 0, 255]


def test_to_uint8_rounds_to_the_nearest_level():
    levels = torch.tensor([0.0, 10.0, 100.0, 200.0, 254.0])
    for offset, expected in [(0.4, levels), (-0.4, levels), (0.6, levels + 1), (-0.6, levels - 1)]:
        values = (levels + offset).clamp(0, 255) / 127.5 - 1.0
        pixels = layout.to_uint8(values.reshape(1, 1, -1, 1, 1)).flatten()
        assert pixels.tolist() == expected.clamp(0, 255).tolist(), offset


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_to_uint8_accepts_any_float_dtype(dtype):
    model = torch.tensor([-1.0, 0.0, 1.0], dtype=dtype).reshape(1, 1, 3, 1, 1)
    pixels = layout.to_uint8(model)
    assert pixels.dtype == torch.uint8
    assert pixels.flatten().tolist() == [0, 128, 255]  # 0 -> 127.5 -> rounds half to even: 128


@pytest.mark.parametrize("bad", [
    torch.zeros(2, 4, 4, 3, dtype=torch.uint8),  # one video [T, H, W, C], not a batch
    torch.zeros(1, 2, 4, 4, 3, dtype=torch.float32),  # already float
    torch.zeros(1, 2, 4, 4, 3, dtype=torch.int64),
])
def test_to_model_rejects_anything_but_a_uint8_batch(bad):
    with pytest.raises(ValueError, match=r"expected uint8 \[B, T, H, W, C\], got"):
        layout.to_model(bad)


@pytest.mark.parametrize("shape", [(3, 2, 4, 4), (1, 1, 3, 2, 4, 4)])
def test_to_uint8_rejects_anything_but_a_5d_batch(shape):
    with pytest.raises(ValueError, match=r"expected float \[B, C, T, H, W\], got"):
        layout.to_uint8(torch.zeros(shape))


def test_read_video_file_gives_one_model_side_video(tmp_path):
    from vidgen.core.io import write_mp4

    path = tmp_path / "grey.mp4"
    write_mp4(path, np.full((5, 16, 24, 3), 128, dtype=np.uint8), fps=8.0)  # flat grey survives H.264 (almost)
    video = layout.read_video_file(path, torch.device("cpu"))
    assert video.shape == (3, 5, 16, 24) and video.dtype == torch.float32  # (C, T, H, W)
    assert (video - (128 / 127.5 - 1.0)).abs().max().item() <= 2 / 127.5  # within two levels of the codec


def test_read_video_file_of_a_missing_file_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError) as excinfo:
        layout.read_video_file(tmp_path / "missing.mp4", torch.device("cpu"))
    assert "missing.mp4" in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_read_video_file_for_a_grayscale_model(tmp_path):
    from vidgen.core.io import rgb_to_gray, write_mp4
    from vidgen.core.synthetic import render_video

    colour = render_video(2, np.arange(6) / 8, 32)  # (T, H, W, 3)
    write_mp4(tmp_path / "colour.mp4", colour, fps=8.0)
    with pytest.raises(UserError) as excinfo:
        layout.read_video_file(tmp_path / "colour.mp4", torch.device("cpu"), channels=1)
    message = str(excinfo.value)
    assert "\n" not in message and "colour.mp4" in message and "in colour" in message
    assert "grayscale" in message and "data.channels 1" in message and "ffmpeg" in message

    gray = rgb_to_gray(colour)  # (T, H, W, 1)
    write_mp4(tmp_path / "gray.mp4", gray, fps=8.0)
    video = layout.read_video_file(tmp_path / "gray.mp4", torch.device("cpu"), channels=1)
    assert video.shape == (1, 6, 32, 32) and video.dtype == torch.float32  # (C, T, H, W)
    expected = torch.from_numpy(gray).permute(3, 0, 1, 2).float() / 127.5 - 1.0
    assert (video - expected).abs().mean().item() < 2 / 127.5  # the luma, within the codec's loss
    rgb = layout.read_video_file(tmp_path / "gray.mp4", torch.device("cpu"))  # a gray file for an RGB model
    assert rgb.shape == (3, 6, 32, 32)
    torch.testing.assert_close(rgb, video.expand(3, -1, -1, -1))  # gray RGB: three equal channels
