"""The StyleGAN-V backend's own maths: phases, optimizers, losses, fake clip times, ADA, truncation. What every
backend must do (build, train, sample, save, resume, ranks) is tests/models/test_backend_contract.py."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from vidgen.errors import ConfigError
from vidgen.models.stylegan_v.backend import (StyleGANVBackend, clip_times_like, fake_clip_horizons,
                                              sample_clip_times)


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


def test_fake_clip_horizons_are_the_real_video_lengths_capped_at_max_num_frames(make_config):
    cfg = make_config(max_num_frames=64)
    times = torch.zeros(4, 3)
    with_lengths = {"times": times, "video_frames": torch.tensor([20, 64, 1000, 9])}
    assert fake_clip_horizons(with_lengths, cfg).tolist() == [20.0, 64.0, 64.0, 9.0]
    assert fake_clip_horizons({"times": times}, cfg).tolist() == [64.0] * 4  # no lengths: the horizon


def test_fake_clip_times_lie_within_the_real_video_they_stand_for(make_config):
    """The reference (training_loop.py) draws each fake clip within min(video length, max_num_frames) frames."""
    cfg = make_config(max_num_frames=64, max_frame_distance=8)
    lengths = torch.tensor([12.0, 30.0, 64.0, 10.0])  # three videos shorter than the horizon, one as long
    # like_real: real clip i has the unique span 2 + i, so each fake clip names the real clip (and video) it copies.
    real = torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 3.0], [0.0, 2.0, 4.0], [0.0, 4.0, 5.0]])
    reached = torch.zeros(4)
    for seed in range(200):
        fake = clip_times_like(real, cfg, torch.Generator().manual_seed(seed), lengths)
        source = (fake[:, -1] - fake[:, 0]).round().long() - 2  # [B]
        assert sorted(source.tolist()) == [0, 1, 2, 3]
        assert bool((fake[:, 0] >= 0).all()) and bool((fake[:, -1] <= lengths[source] - 1).all())
        reached[source] = torch.maximum(reached[source], fake[:, -1])
    assert bool((reached > lengths - 2).all())  # and they use all of it
    # sampled: clip i within video i.
    horizons = torch.tensor([9.0, 16.0, 64.0, 40.0]).repeat(500)
    times = sample_clip_times(len(horizons), cfg, torch.Generator().manual_seed(0), horizons=horizons)
    assert bool((times[:, 0] >= 0).all()) and bool((times[:, -1] <= horizons - 1).all())
    assert float(times[2::4, -1].max()) > 32  # a video as long as the horizon is used past the short ones
    # Videos at least as long as the horizon: the horizon, and the same draws as without lengths.
    full = torch.full((4,), 64.0)
    torch.testing.assert_close(clip_times_like(real, cfg, torch.Generator().manual_seed(0), full),
                               clip_times_like(real, cfg, torch.Generator().manual_seed(0)), rtol=0, atol=0)
    torch.testing.assert_close(sample_clip_times(4, cfg, torch.Generator().manual_seed(0), horizons=full),
                               sample_clip_times(4, cfg, torch.Generator().manual_seed(0)), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["like_real", "sampled"])
def test_the_losses_draw_fake_times_within_each_batch_videos_length(make_recipe, mode):
    backend = StyleGANVBackend(make_recipe(fake_clip_times=mode, max_num_frames=64))
    batch = moving_bars(4, torch.Generator().manual_seed(0))
    batch["video_frames"] = torch.tensor([10, 13, 500, 11])  # one video longer than the horizon (64)

    class RecordTimes(nn.Module):
        def __init__(self, D: nn.Module) -> None:
            super().__init__()
            self.D, self.times = D, []

        def forward(self, video: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
            self.times.append(times)
            return self.D(video, times)

    D = RecordTimes(backend.networks["D"])
    nets = {"G": backend.networks["G"], "D": D}
    for phase in ("G_main", "D_main"):
        for seed in range(5):
            backend.loss(phase, batch, nets, torch.Generator().manual_seed(seed))
    fakes = [t for t in D.times if not torch.equal(t, batch["times"])]  # [B, k] each
    assert len(fakes) == 10
    for fake in fakes:  # only the long video's clip may pass the short videos' 12 frames, and it stays below 63
        assert bool((fake >= 0).all()) and bool((fake[:, -1] < 63).all())
        assert int((fake[:, -1] >= 12).sum()) <= 1
    assert max(float(fake[:, -1].max()) for fake in fakes) >= 12


def test_only_the_network_a_phase_steps_gets_gradients(make_recipe):
    backend = StyleGANVBackend(make_recipe(pl_weight=1.0))
    nets = backend.networks
    batch = moving_bars(4, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    for phase in ("G_main", "G_reg", "D_main", "D_reg"):
        nets.zero_grad(set_to_none=True)
        loss, _ = backend.loss(phase, batch, nets, generator)
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


def test_truncation_changes_the_video_and_one_is_none(make_recipe):
    recipe = make_recipe(resolution=8)
    backend = StyleGANVBackend(recipe)
    backend.networks.eval()
    cpu = torch.device("cpu")
    plain = backend.sample(backend.networks, [1], 5, cpu)
    truncated = backend.sample(backend.networks, [1], 5, cpu, recipe.sample_options(truncation=0.5))
    assert float((truncated - plain).abs().max()) > 1e-4
    again = backend.sample(backend.networks, [1], 5, cpu, recipe.sample_options(truncation=1.0))
    assert torch.equal(again, plain), "psi = 1 is no truncation"


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
