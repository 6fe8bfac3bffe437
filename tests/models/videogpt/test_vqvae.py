"""VideoGPT's VQ-VAE and axial attention (vidgen/models/videogpt/vqvae.py, axial.py) at tiny widths on CPU."""

from __future__ import annotations

import math

import pytest
import torch

from vidgen.models.videogpt.axial import AxialAttention, AxisAttention
from vidgen.models.videogpt.vqvae import VQVAE, SamePadConv3d, SamePadConvTranspose3d, stride_schedule


def tiny_vqvae(**overrides) -> VQVAE:
    args = dict(n_codes=16, embedding_dim=8, n_hiddens=16, n_res_layers=1, downsample=(4, 2, 2)) | overrides
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return VQVAE(**args)


def clip(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------------------------------------
# Shapes and padding


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_bair_clip_gives_4x32x32_codes_and_round_trips(norm):
    model = tiny_vqvae(norm=norm)
    x = clip((2, 3, 16, 64, 64))
    codes = model.encode(x)
    assert codes.shape == (2, 4, 32, 32) and codes.dtype == torch.long
    assert model.latent_shape(16, 64, 64) == (4, 32, 32)
    assert model.decode_codes(codes).shape == x.shape
    x_hat, logs, _ = model(x)
    assert x_hat.shape == x.shape
    assert set(logs) == {"loss", "recon_mse", "commitment", "perplexity", "codes_used"}


def test_ucf_downsampling_gives_4x32x32_codes():
    model = tiny_vqvae(downsample=(4, 4, 4), n_res_layers=0)
    assert model.encode(clip((1, 3, 16, 128, 128))).shape == (1, 4, 32, 32)


def test_stride_schedule_is_the_official_order():
    assert stride_schedule((4, 2, 2)) == [(2, 2, 2), (2, 1, 1)]
    assert stride_schedule((4, 4, 4)) == [(2, 2, 2), (2, 2, 2)]
    with pytest.raises(ValueError, match="powers of two"):
        stride_schedule((3, 2, 2))


def test_single_downsampling_layer_builds():
    # The official Encoder gives its last conv 3 input channels here and fails.
    assert tiny_vqvae(downsample=(2, 2, 2)).encode(clip((1, 3, 4, 8, 8))).shape == (1, 2, 4, 4)


def test_indivisible_clip_is_a_clear_error():
    with pytest.raises(ValueError, match="height 31 is not divisible by the downsampling factor 2"):
        tiny_vqvae().encode(clip((1, 3, 16, 31, 32)))


@pytest.mark.parametrize("kernel,stride", [(4, 2), (4, 1), (3, 1), (1, 1), (4, (2, 1, 1))])
def test_same_padding_matches_explicit_official_padding(kernel, stride):
    """Against the official construction written out: F.pad by (k - s) with the odd one on the left, then an
    unpadded conv (ours pads inside the conv when symmetric)."""
    conv = SamePadConv3d(2, 3, kernel, stride)
    x = torch.randn(1, 2, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    ks, ss = (kernel,) * 3, stride if isinstance(stride, tuple) else (stride,) * 3
    pad = []
    for k, s in reversed(list(zip(ks, ss))):
        pad += [(k - s) // 2 + (k - s) % 2, (k - s) // 2]
    expected = torch.nn.functional.conv3d(torch.nn.functional.pad(x, pad), conv.conv.weight, conv.conv.bias, ss)
    torch.testing.assert_close(conv(x), expected)
    assert conv(x).shape[2:] == tuple(8 // s for s in ss)
    convt = SamePadConvTranspose3d(3, 2, kernel, stride)
    assert convt(conv(x)).shape == x.shape


# ------------------------------------------------------------------------------------------------------------------
# Axial attention


def naive_axis_attention(module: AxisAttention, x: torch.Tensor, axis: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v computed fibre by fibre with explicit loops, in float64. x: (B, T, H, W, C)."""
    x = x.double()
    Wqkv, Wo, bo = module.qkv.weight.double(), module.out.weight.double(), module.out.bias.double()
    C, heads = x.shape[-1], module.heads
    d = C // heads
    out = torch.zeros_like(x)
    B, T, H, W, _ = x.shape
    other = [range(n) for i, n in enumerate((T, H, W)) if i + 1 != axis]
    for b in range(B):
        for i in other[0]:
            for j in other[1]:
                index = [b, i, j]
                index.insert(axis, slice(None))
                fibre = x[tuple(index)]  # (L, C)
                q, k, v = (fibre @ Wqkv.t()).split(C, dim=-1)
                heads_out = []
                for h in range(heads):
                    qh, kh, vh = (t[:, h * d:(h + 1) * d] for t in (q, k, v))
                    heads_out.append(torch.softmax(qh @ kh.t() / math.sqrt(d), dim=-1) @ vh)
                out[tuple(index)] = torch.cat(heads_out, dim=-1) @ Wo.t() + bo
    return out


@pytest.mark.parametrize("axis_name,axis", [("t", 1), ("h", 2), ("w", 3)])
def test_axis_attention_matches_naive_float64(axis_name, axis):
    torch.manual_seed(0)
    module = AxisAttention(8, 2, axis_name).double()
    x = torch.randn(2, 3, 4, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(module(x), naive_axis_attention(module, x, axis))


@pytest.mark.parametrize("axis_name,axis", [("t", 1), ("h", 2), ("w", 3)])
def test_axis_attention_sees_only_its_fibre(axis_name, axis):
    """Changing every position off the fibre through one point leaves that fibre's outputs unchanged, and
    changing one point on the fibre changes them."""
    torch.manual_seed(0)
    module = AxisAttention(8, 2, axis_name)
    x = torch.randn(1, 4, 5, 6, 8)
    fibre = [0, 2, 3, 4]
    fibre[axis] = slice(None)
    fibre = tuple(fibre)
    on_fibre = torch.zeros(x.shape[:-1], dtype=torch.bool)
    on_fibre[fibre] = True
    y = torch.where(on_fibre[..., None], x, torch.randn_like(x))
    torch.testing.assert_close(module(y)[fibre], module(x)[fibre])
    z = x.clone()
    point = list(fibre)
    point[axis] = 0
    z[tuple(point)] += 1.0
    assert not torch.allclose(module(z)[fibre], module(x)[fibre])


def test_axial_attention_is_the_sum_of_the_three_axes():
    torch.manual_seed(0)
    module = AxialAttention(8, 2)
    x = torch.randn(2, 8, 3, 4, 5)  # (B, C, T, H, W)
    tokens = x.permute(0, 2, 3, 4, 1)
    expected = (module.attn_t(tokens) + module.attn_h(tokens) + module.attn_w(tokens)).permute(0, 4, 1, 2, 3)
    torch.testing.assert_close(module(x), expected)


# ------------------------------------------------------------------------------------------------------------------
# Gradients and training


def test_straight_through_reaches_the_encoder_and_not_the_codebook():
    model = tiny_vqvae()
    model.codebook.embeddings.requires_grad_(True)  # a buffer; made a leaf here only to see whether grads reach it
    x = clip((1, 3, 8, 16, 16))
    x_hat, _, _ = model(x)
    ((x_hat - x) ** 2).mean().backward()  # a loss on the decoder output alone
    assert model.codebook.embeddings.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert model.pre_vq_conv.conv.weight.grad.abs().sum() > 0


def test_codebook_state_is_buffers_not_parameters():
    model = tiny_vqvae()
    names = {n for n, _ in model.named_parameters()}
    assert not any(n.startswith("codebook.") for n in names)
    assert {"codebook.embeddings", "codebook.N", "codebook.m", "codebook.initialised"} <= set(model.state_dict())


def test_dead_codes_restart_from_encoder_outputs_in_the_model():
    model = tiny_vqvae()
    x = clip((1, 3, 8, 16, 16))
    model.codebook.update(model(x, torch.Generator().manual_seed(0))[2])  # first update: data-dependent init
    model.codebook.N[:8] = 0.0  # codes 0..7 dead
    _, _, stats = model(x, torch.Generator().manual_seed(1))
    model.codebook.update(stats)
    with torch.no_grad():
        z = model.embed(x)  # BatchNorm in train mode: the same batch statistics as the forward above
    flat = z.permute(0, 2, 3, 4, 1).reshape(-1, z.shape[1])  # (M, D), M = 2·4·4 = 32 >= 16 codes: no jitter
    for j in range(8):
        assert (flat == model.codebook.embeddings[j]).all(dim=1).any(), f"code {j} is not an encoder output"


def test_a_few_steps_on_one_batch_lower_the_reconstruction_loss():
    model = tiny_vqvae(downsample=(2, 2, 2))
    x = clip((2, 3, 4, 8, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    recon = []
    for _ in range(20):
        _, logs, stats = model(x, generator)
        optimizer.zero_grad()
        logs["loss"].backward()
        optimizer.step()
        model.codebook.update(stats)  # once per optimizer step, after it
        recon.append(logs["recon_mse"].item())
    # train mode throughout: BatchNorm's running statistics are not yet settled after 20 steps
    assert recon[-1] < 0.7 * recon[0], recon
