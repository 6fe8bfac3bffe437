from __future__ import annotations

import dataclasses

import pytest
import torch

from vidgen.models.vdm.unet import RelativePositionBias, TemporalAttention, UNet3D


@pytest.mark.parametrize("frames", [1, 5, 8])
def test_output_shape_for_any_frame_count(tiny_config, frames):
    unet = UNet3D(tiny_config, video_channels=3, resolution=16)
    z = torch.randn(2, 3, frames, 16, 16)
    out = unet(z, torch.tensor([-5.0, 5.0]))
    assert out.shape == (2, 3, frames, 16, 16)


def test_fresh_unet_outputs_zeros(tiny_config):
    # The output conv is zero-initialised, so training starts from "predict 0".
    unet = UNet3D(tiny_config, video_channels=3, resolution=16)
    assert torch.count_nonzero(unet(torch.randn(1, 3, 2, 16, 16), torch.zeros(1))) == 0


def test_frame_size_not_divisible_by_downsampling_is_a_clear_error(tiny_config):
    unet = UNet3D(tiny_config, video_channels=3, resolution=16)
    with pytest.raises(ValueError, match="not divisible by 2"):
        unet(torch.randn(1, 3, 4, 15, 16), torch.zeros(1))


def test_output_depends_on_logsnr(tiny_config, randomize_weights):
    unet = randomize_weights(UNet3D(tiny_config, video_channels=3, resolution=16))
    z = torch.randn(1, 3, 2, 16, 16).expand(2, -1, -1, -1, -1)
    out = unet(z, torch.tensor([-10.0, 10.0]))
    assert not torch.allclose(out[0], out[1], atol=1e-4)


def test_frames_interact_only_through_temporal_attention(tiny_config, randomize_weights):
    unet = randomize_weights(UNet3D(tiny_config, video_channels=3, resolution=16))
    z = torch.randn(1, 3, 4, 16, 16)
    changed = z.clone()
    changed[:, :, 1:] = torch.randn(1, 3, 3, 16, 16)  # every frame but the first
    logsnr = torch.zeros(1)
    with torch.no_grad():
        # Without a mask the first frame sees the others ...
        assert not torch.allclose(unet(z, logsnr)[:, :, 0], unet(changed, logsnr)[:, :, 0], atol=1e-4)
        # ... and with a diagonal mask (each frame attends only to itself) it does not.
        only_self = torch.eye(4, dtype=torch.bool)
        torch.testing.assert_close(unet(z, logsnr, frame_mask=only_self)[:, :, 0],
                                   unet(changed, logsnr, frame_mask=only_self)[:, :, 0])


def test_relative_position_bias_depends_only_on_distance():
    bias = RelativePositionBias(heads=3)
    long = bias(9, torch.device("cpu"))  # (3, 9, 9)
    short = bias(4, torch.device("cpu"))
    torch.testing.assert_close(short, long[:, :4, :4])  # no table tied to a length
    for d in range(-8, 9):  # Toeplitz: constant along each diagonal
        diagonal = torch.diagonal(long, offset=d, dim1=1, dim2=2)
        torch.testing.assert_close(diagonal, diagonal[:, :1].expand_as(diagonal))


def test_temporal_attention_is_translation_equivariant(randomize_weights):
    # With a banded mask (|i - j| <= 1) every interior frame sees a full neighbourhood, so shifting the
    # video by one frame shifts the output by one frame.
    attention = randomize_weights(TemporalAttention(channels=8, heads=2, groups=4))
    x = torch.randn(2, 8, 8, 4, 4)
    band = lambda n: (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs() <= 1  # noqa: E731
    with torch.no_grad():
        out = attention(x, band(8))
        shifted = attention(x[:, :, 1:], band(7))
    torch.testing.assert_close(shifted[:, :, 1:6], out[:, :, 2:7])


def test_temporal_attention_accepts_long_videos(randomize_weights):
    attention = randomize_weights(TemporalAttention(channels=8, heads=2, groups=4))
    out = attention(torch.randn(1, 8, 64, 2, 2))
    assert out.shape == (1, 8, 64, 2, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("temporal_resolutions, expected", [(None, [8]), ((16, 8), [16, 8]), ((16,), [16])])
def test_temporal_attention_resolutions_place_temporal_attention(tiny_config, temporal_resolutions, expected):
    config = dataclasses.replace(tiny_config, temporal_attention_resolutions=temporal_resolutions)
    unet = UNet3D(config, video_channels=3, resolution=16)
    sizes = {16: unet.down[0], 8: unet.down[2]}  # the first block at each level (16 px, then 8 px after Downsample)
    assert [size for size, block in sizes.items() if block.temporal_attention is not None] == expected
    assert [size for size, block in sizes.items() if block.spatial_attention is not None] == [8]  # unchanged
    assert unet.middle[0].temporal_attention is not None


def test_channels_last_changes_the_memory_layout_not_the_numbers(tiny_config, randomize_weights):
    from vidgen.models.vdm.unet import is_channels_last

    plain = randomize_weights(UNet3D(tiny_config, video_channels=3, resolution=16))
    fast = UNet3D(dataclasses.replace(tiny_config, channels_last=True), video_channels=3, resolution=16)
    fast.load_state_dict(plain.state_dict())
    conv_inputs = []  # every convolution must see channels-last input, or the option only adds copies
    for module in fast.modules():
        if isinstance(module, torch.nn.Conv3d):
            assert module.weight.is_contiguous(memory_format=torch.channels_last_3d)
            module.register_forward_pre_hook(lambda _, args: conv_inputs.append(is_channels_last(args[0])))
    z, logsnr = torch.randn(2, 3, 4, 16, 16), torch.tensor([-3.0, 4.0])
    mask = torch.eye(4, dtype=torch.bool) | torch.tensor([[1, 1, 0, 0]] * 4, dtype=torch.bool)
    outputs = [unet(z, logsnr, frame_mask=mask) for unet in (plain, fast)]
    assert conv_inputs and all(conv_inputs)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    for out in outputs:
        out.square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
