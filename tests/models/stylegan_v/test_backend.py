"""The StyleGAN-V backend: phases, optimizers, losses, fake clip times, sampling, and a short training run."""

from __future__ import annotations

import math

import pytest
import torch

from vidgen.errors import ConfigError
from vidgen.models.stylegan_v.backend import StyleGANVBackend, clip_times_like, sample_clip_times


def moving_bars(batch: int, generator: torch.Generator, size: int = 16) -> dict[str, torch.Tensor]:
    """Simple fixed-law real clips: a coloured horizontal bar moving down one pixel per frame over black, seen at
    k = 3 sorted integer times (relative to the first) — [B, 3, 3, H, W] in [-1, 1] and [B, 3]."""
    gaps = torch.randint(1, 5, (batch, 2), generator=generator).float()
    times = torch.cat([torch.zeros(batch, 1), gaps.cumsum(dim=1)], dim=1)  # [B, 3]
    start = torch.randint(0, size // 2, (batch, 1), generator=generator).float()
    rows = torch.arange(size).float()
    position = (start + times) % size  # [B, 3]
    on = ((rows[None, None, :] - position[..., None]).abs() < 2).float()  # [B, 3, H]
    colour = torch.rand(batch, 3, generator=generator) * 1.6 - 0.8  # [B, C]
    video = -1 + (colour[:, :, None, None] + 1) * on[:, None, :, :]  # [B, C, 3, H]
    return {"video": video[..., None].expand(-1, -1, -1, -1, size).contiguous(), "times": times}


def test_phases_and_lazy_regularisation_rescaling(make_recipe):
    backend = StyleGANVBackend(make_recipe())
    assert [(p.name, p.optimizer, p.every) for p in backend.phases()] == [
        ("G_main", "G", 1), ("D_main", "D", 1), ("D_reg", "D", 16)]
    assert backend.ema_networks == ("G",)
    optimizers = backend.make_optimizers()
    for key, every in (("G", 4), ("D", 16)):
        c = every / (every + 1)
        group = optimizers[key].param_groups[0]
        assert group["lr"] == pytest.approx(0.0025 * c)
        assert group["betas"] == pytest.approx((0.0, 0.99 ** c)) and group["eps"] == 1e-8
    ids = {key: {id(p) for g in opt.param_groups for p in g["params"]} for key, opt in optimizers.items()}
    assert ids["G"] == {id(p) for p in backend.networks["G"].parameters()}
    assert ids["D"] == {id(p) for p in backend.networks["D"].parameters()}
    with_pl = StyleGANVBackend(make_recipe(pl_weight=2.0))
    assert ("G_reg", "G", 4) in [(p.name, p.optimizer, p.every) for p in with_pl.phases()]


def test_r1_gamma_defaults_to_the_reference_heuristic(make_recipe):
    assert StyleGANVBackend(make_recipe(resolution=16, batch_size=4)).r1_gamma == pytest.approx(0.0002 * 256 / 4)
    assert StyleGANVBackend(make_recipe(r1_gamma=0.5)).r1_gamma == 0.5
    assert "D_reg" not in [p.name for p in StyleGANVBackend(make_recipe(r1_gamma=0.0)).phases()]


def test_fake_clip_times_follow_the_reference_sampling(make_config):
    cfg = make_config(max_num_frames=64, max_frame_distance=8)  # distances {2, 4, 8}
    times = sample_clip_times(4000, cfg, torch.Generator().manual_seed(0))
    assert times.shape == (4000, 3)
    relative = times - times[:, :1]
    distance = relative[:, -1]
    # (float32 times: a gap carries the rounding of its absolute times)
    assert set(distance.round().tolist()) == {2.0, 4.0, 8.0}
    torch.testing.assert_close(distance, distance.round(), rtol=0, atol=1e-4)
    middle = relative[:, 1]
    torch.testing.assert_close(middle, middle.round(), rtol=0, atol=1e-4)
    assert bool(((middle.round() >= 1) & (middle.round() <= distance.round() - 1)).all())
    offset = times[:, 0]
    assert bool((offset >= 0).all()) and bool((offset + distance < 64 - 1 + 1e-4).all())
    assert float((offset - offset.round()).abs().max()) > 0.1  # fractional starts
    # k = 4: two distinct middle frames.
    four = sample_clip_times(500, make_config(num_frames_per_clip=4, max_frame_distance=4),
                             torch.Generator().manual_seed(1))
    assert bool((four[:, 1:] > four[:, :-1]).all()) and set((four[:, 3] - four[:, 0]).round().tolist()) == {4.0}


def test_fake_clip_times_like_real_reuse_the_real_gaps_at_fractional_starts(make_config):
    cfg = make_config(max_num_frames=64)
    real = torch.tensor([[0.0, 1.0, 2.0], [0.0, 3.0, 8.0], [5.0, 6.0, 9.0], [0.0, 2.0, 4.0]])
    fake = clip_times_like(real, cfg, torch.Generator().manual_seed(0))
    gaps = lambda t: sorted(map(tuple, (t[:, 1:] - t[:, :-1]).round().tolist()))  # noqa: E731
    assert gaps(fake) == gaps(real)
    start, span = fake[:, 0], fake[:, -1] - fake[:, 0]
    assert bool((start >= 0).all()) and bool((start + span <= 63).all())
    assert float((start - start.round()).abs().max()) > 0.01


def test_each_phase_gives_a_finite_loss_and_only_its_network_gets_gradients(make_recipe):
    backend = StyleGANVBackend(make_recipe(pl_weight=1.0))
    nets = backend.networks
    batch = moving_bars(4, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    for phase in ("G_main", "G_reg", "D_main", "D_reg"):
        nets.zero_grad(set_to_none=True)
        loss, values = backend.loss(phase, batch, nets, generator)
        assert loss.ndim == 0 and torch.isfinite(loss) and all(math.isfinite(v) for v in values.values())
        loss.backward()
        trained, frozen = ("G", "D") if phase.startswith("G") else ("D", "G")
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in nets[trained].parameters())
        assert all(p.grad is None for p in nets[frozen].parameters())


def test_r1_is_the_per_frame_gradient_norm_averaged_per_video(make_recipe):
    backend = StyleGANVBackend(make_recipe(r1_gamma=0.3))
    batch = moving_bars(4, torch.Generator().manual_seed(0))
    loss, values = backend.loss("D_reg", batch, backend.networks, torch.Generator())
    real = batch["video"].clone().requires_grad_(True)
    (grads,) = torch.autograd.grad(backend.networks["D"](real, batch["times"]).sum(), real)
    per_frame = torch.stack([grads[:, :, t].square().sum(dim=(1, 2, 3)) for t in range(3)], dim=1)  # [B, k]
    expected = per_frame.mean(dim=1).mean() * 0.3 / 2 * 16  # gamma / 2, times the lazy interval
    torch.testing.assert_close(loss, expected)
    assert values["D/r1_penalty"] == pytest.approx(float(per_frame.mean()), rel=1e-5)


def test_sample_is_per_seed_and_in_range(make_recipe):
    backend = StyleGANVBackend(make_recipe(resolution=8))
    backend.networks.eval()
    videos = backend.sample(backend.networks, seeds=[0, 1, 2], frames=5, fps=8.0, device=torch.device("cpu"))
    assert videos.shape == (3, 3, 5, 8, 8) and torch.isfinite(videos).all()
    alone = backend.sample(backend.networks, seeds=[1], frames=5, fps=8.0, device=torch.device("cpu"))
    torch.testing.assert_close(alone[0], videos[1], rtol=1e-5, atol=1e-5)
    assert float((videos[0] - videos[2]).abs().max()) > 1e-3
    truncated = backend.sample(backend.networks, seeds=[1], frames=5, fps=8.0, device=torch.device("cpu"),
                               truncation=0.5)
    assert float((truncated - alone).abs().max()) > 1e-4


def test_ada_p_is_extra_state_and_adapts(make_recipe):
    backend = StyleGANVBackend(make_recipe(augment="ada", augment_p=0.5, ada_speed_videos=100, ada_interval=1))
    batch = moving_bars(4, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):  # each D step moves p by +-4 videos / 100 (E[sign] of 4 logits is never exactly 0.6)
        _, values = backend.loss("D_main", batch, backend.networks, generator)
    moved = abs(backend.extra_state()["augment_p"] - 0.5)
    assert moved == pytest.approx(0.04) or moved == pytest.approx(0.12)
    assert values["augment_p"] == backend.ada.p == backend.augment_p
    state = {"augment_p": 0.37, "pl_mean": 1.5}
    backend.load_extra_state(state)
    assert backend.extra_state() == state and backend.ada.p == 0.37


def test_config_errors_name_the_key(make_recipe, make_config):
    from vidgen.core.config import DataConfig, Recipe

    base = make_recipe()

    def check(data=None, **model):
        recipe = Recipe(run=base.run, data=data or base.data, model=make_config(**model), train=base.train)
        recipe.model.check_recipe(recipe)

    with pytest.raises(ConfigError, match="data.resolution"):
        check(DataConfig(resolution=24, frames=3))
    with pytest.raises(ConfigError, match="data.frames"):
        check(DataConfig(resolution=16, frames=4))
    with pytest.raises(ConfigError, match="model.fp16_resolutions"):
        check(fp16_resolutions=4, conv_clamp=256.0)  # 16x16 has only 8 and 16 above 4x4
    with pytest.raises(ConfigError, match="model.conv_clamp"):
        make_config(fp16_resolutions=1)
    with pytest.raises(ConfigError, match="model.augment_p"):
        make_config(augment="fixed")
    with pytest.raises(ConfigError, match="model.max_frame_distance"):
        make_config(num_frames_per_clip=4, max_frame_distance=2)
    with pytest.raises(ConfigError, match="motion_v_dim"):
        make_config(motion_v_dim=15)
    recipe = make_recipe(batch_size=6)
    with pytest.raises(ConfigError, match="train.batch_size"):
        recipe.model.check_recipe(recipe)


def test_short_training_run_discriminator_separates_and_generator_responds(make_recipe):
    """~60 steps at 16x16, k = 3, on fixed-law clips: D's logit gap opens, and G's loss follows it."""
    recipe = make_recipe(resolution=16, batch_size=8)
    backend = StyleGANVBackend(recipe)
    nets, optimizers = backend.networks, backend.make_optimizers()
    data_gen, noise_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    z_probe = torch.randn(4, recipe.model.z_dim, generator=torch.Generator().manual_seed(3))
    t_probe = torch.tensor([[0.0, 1.0, 2.0]] * 4)
    with torch.no_grad():
        before = nets["G"].eval()(z_probe, t_probe)
    nets.train()
    history = []
    for step in range(60):
        batch = moving_bars(8, data_gen)
        record = {}
        for phase in backend.phases():
            if step % phase.every:
                continue
            optimizer = optimizers[phase.optimizer]
            optimizer.zero_grad(set_to_none=True)
            loss, values = backend.loss(phase.name, batch, nets, noise_gen)
            loss.backward()
            optimizer.step()
            record.update(values)
        history.append(record)

    def mean(key, steps):
        return sum(h[key] for h in steps) / len(steps)

    gap_start = mean("D/real_logit", history[:5]) - mean("D/fake_logit", history[:5])
    gap_end = mean("D/real_logit", history[-15:]) - mean("D/fake_logit", history[-15:])
    assert gap_end > gap_start + 0.5 and gap_end > 1.0, (gap_start, gap_end)
    assert mean("D/accuracy", history[-15:]) > 0.75
    assert mean("D/loss", history[-15:]) < mean("D/loss", history[:5])
    # G's loss responds to the stronger D (it is -log sigmoid of the fake logit), and G has changed.
    assert mean("G/loss", history[-15:]) > mean("G/loss", history[:5]) + 0.2
    with torch.no_grad():
        after = nets["G"].eval()(z_probe, t_probe)
    assert float((after - before).abs().mean()) > 1e-2
    assert all(math.isfinite(v) for h in history for v in h.values())
