"""CUDA-only checks: the float16 layers (fp16_resolutions + conv_clamp) and sampling on a GPU. Skipped without one."""

from __future__ import annotations

import pytest
import torch

from vidgen.models.stylegan_v.backend import StyleGANVBackend
from vidgen.models.stylegan_v.discriminator import Discriminator
from vidgen.models.stylegan_v.generator import Generator

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def test_fp16_layers_run_in_half_precision_and_track_fp32(make_config):
    fp32_cfg = make_config(channel_base=1024, channel_max=64)
    fp16_cfg = make_config(channel_base=1024, channel_max=64, fp16_resolutions=3, conv_clamp=256.0)
    torch.manual_seed(0)
    G32, D32 = Generator(fp32_cfg, 64).to(CUDA), Discriminator(fp32_cfg, 64).to(CUDA)
    G16, D16 = Generator(fp16_cfg, 64).to(CUDA), Discriminator(fp16_cfg, 64).to(CUDA)
    G16.load_state_dict(G32.state_dict())
    D16.load_state_dict(D32.state_dict())
    dtypes = []
    G16.synthesis.blocks[-1].conv1.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
    z = torch.randn(4, fp32_cfg.z_dim, device=CUDA)
    t = torch.tensor([[0.0, 2.5, 7.0]] * 4, device=CUDA)
    motion_z = G32.draw_motion_z(4, 7.0, device=CUDA)
    for mode in ("eval", "train"):
        G32.train(mode == "train")
        G16.train(mode == "train")
        a, b = G32(z, t, motion_z=motion_z), G16(z, t, motion_z=motion_z)
        assert b.dtype == torch.float32 and torch.isfinite(b).all()
        assert float((a - b).abs().mean() / a.abs().mean()) < 2e-2, mode
    assert dtypes and all(d == torch.float16 for d in dtypes)  # the 64x64 block really ran in half precision
    video = G16(z, t, motion_z=motion_z)
    logits = D16(video, t)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    torch.testing.assert_close(logits, D32(video, t), rtol=5e-2, atol=5e-2)
    logits.sum().backward()
    grads = [p.grad for p in list(G16.parameters()) + list(D16.parameters()) if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_training_phases_and_sampling_on_cuda(make_recipe):
    recipe = make_recipe(resolution=32, batch_size=4, fp16_resolutions=2, conv_clamp=256.0, augment="fixed",
                         augment_p=0.5)
    backend = StyleGANVBackend(recipe)
    backend.networks.to(CUDA)
    generator = torch.Generator(CUDA).manual_seed(0)
    batch = {"video": torch.rand(4, 3, 3, 32, 32, device=CUDA) * 2 - 1,
             "times": torch.tensor([[0.0, 1.0, 3.0]] * 4, device=CUDA)}
    for phase in ("G_main", "D_main", "D_reg"):
        loss, _ = backend.loss(phase, batch, backend.networks, generator)
        assert torch.isfinite(loss)
        loss.backward()
    backend.networks.eval()
    full = backend.sample(backend.networks, [5, 6], 40, CUDA)
    assert full.device.type == "cuda" and torch.isfinite(full).all()
    alone = backend.sample(backend.networks, [6], 10, CUDA)
    torch.testing.assert_close(alone[0], full[1, :, :10], rtol=1e-3, atol=1e-3)
