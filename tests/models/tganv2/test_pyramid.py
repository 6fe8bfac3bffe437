"""The multi-level pyramid rule: which frames, videos and resolution each level keeps, for real and generated clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidgen.models.tganv2.generator import TGANv2Generator, sample_z
from vidgen.models.tganv2.pyramid import (PyramidSpec, RealPyramid, batch_levels, box_resize, check_phases,
                                          draw_phases, level_batch_strides, level_clips, level_frame_counts,
                                          level_frame_indices, level_key, level_labels, level_resolutions,
                                          subsample_batch, subsample_frames)


def real_pyramid(clip: torch.Tensor, spec: PyramidSpec, phases) -> list[torch.Tensor]:
    """A batch's real levels as the loss sees them: each clip's levels (the data layer), then the batch strides."""
    return batch_levels(level_clips(clip, spec, phases), spec.batch_factors)


def frame_valued_clip(batch: int, frames: int, resolution: int) -> torch.Tensor:
    """[B, 3, T, R, R] whose frame t of video b is the constant 100 b + t, so every kept value names its frame."""
    values = 100.0 * torch.arange(batch)[:, None] + torch.arange(frames)[None, :]  # [B, T]
    return values[:, None, :, None, None].expand(batch, 3, frames, resolution, resolution).clone()


def test_subsample_frames_keeps_every_factor_th_frame_from_the_phase():
    x = torch.arange(16.0).view(1, 1, 16, 1, 1)
    assert subsample_frames(x, 2, 0).flatten().tolist() == list(range(0, 16, 2))
    assert subsample_frames(x, 2, 1).flatten().tolist() == list(range(1, 16, 2))
    assert subsample_frames(x, 4, 3).flatten().tolist() == [3, 7, 11, 15]
    assert subsample_frames(x, 1, 0).flatten().tolist() == list(range(16))
    features = torch.arange(8.0).view(1, 8, 1, 1, 1)  # the generator's [B, T, C, H, W]
    assert subsample_frames(features, 2, 1, dim=1).flatten().tolist() == [1, 3, 5, 7]
    with pytest.raises(ValueError, match="phase"):
        subsample_frames(x, 2, 2)


def test_subsample_batch_keeps_every_factor_th_video():
    assert subsample_batch(torch.arange(8), 2).tolist() == [0, 2, 4, 6]
    assert subsample_batch(torch.arange(5), 2).tolist() == [0, 2, 4]
    assert subsample_batch(torch.arange(4), 1).tolist() == [0, 1, 2, 3]


def test_level_indices_counts_strides_and_resolutions_of_the_default_setting():
    assert level_frame_indices(16, (2, 2, 2), (1, 0, 1)) == [
        list(range(16)), [1, 3, 5, 7, 9, 11, 13, 15], [1, 5, 9, 13], [5, 13]]
    assert level_frame_indices(16, (2, 2, 2)) == [list(range(16)), list(range(0, 16, 2)), [0, 4, 8, 12], [0, 8]]
    assert level_frame_counts(16, (2, 2, 2)) == (16, 8, 4, 2)
    assert level_frame_counts(24, (3, 2)) == (24, 8, 4)
    assert level_batch_strides((2, 2, 2)) == (1, 2, 4, 8)
    assert level_batch_strides((1, 1, 1)) == (1, 1, 1, 1)
    assert level_resolutions(192, 4) == (24, 48, 96, 192)
    assert level_labels(torch.arange(8), (2, 2, 2))[3].tolist() == [0]
    with pytest.raises(ValueError):
        level_frame_counts(12, (2, 2, 2))


def test_phases_come_reproducibly_from_the_given_generator():
    factors = (2, 3, 4)
    first = [draw_phases(factors, torch.Generator().manual_seed(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    g = torch.Generator().manual_seed(7)
    draws = [draw_phases(factors, g) for _ in range(200)]
    assert draws[0] == first[0]  # the same stream
    for level, factor in enumerate(factors):
        assert {d[level] for d in draws} == set(range(factor))  # uniform over [0, f): every phase occurs
    assert draw_phases(factors) == (0, 0, 0)  # no generator: the fixed pyramid
    assert check_phases(factors, None) == (0, 0, 0)
    for bad in ((0, 0), (2, 0, 0), (0, -1, 0)):
        with pytest.raises(ValueError, match="phases"):
            check_phases(factors, bad)


def test_box_resize_is_the_reference_reshape_mean():
    x = torch.randn(2, 3, 4, 16, 16, dtype=torch.float64)
    for k in (1, 2, 4, 8):
        s = 16 // k
        reference = x.reshape(2, 3, 4, s, k, s, k).mean(dim=(4, 6))  # tgan2/datasets/multi_level.py `pooling`
        torch.testing.assert_close(box_resize(x, s), reference)


def test_real_pyramid_keeps_the_frames_and_videos_of_the_rule():
    spec = PyramidSpec(frame_factors=(2, 2, 2), batch_factors=(2, 1, 2), resolution=32)
    clip = frame_valued_clip(8, 16, 32)
    phases = (1, 0, 1)
    levels = real_pyramid(clip, spec, phases)
    indices = level_frame_indices(16, spec.frame_factors, phases)
    strides = level_batch_strides(spec.batch_factors)
    for level, (x, res) in enumerate(zip(levels, spec.resolutions)):
        videos = list(range(0, 8, strides[level]))
        assert x.shape == (len(videos), 3, len(indices[level]), res, res)
        expected = 100.0 * torch.tensor(videos)[:, None] + torch.tensor(indices[level], dtype=torch.float32)
        torch.testing.assert_close(x[:, 0, :, 0, 0], expected)  # frame-constant: the value names the frame
        torch.testing.assert_close(x.amin(dim=(1, 3, 4)), x.amax(dim=(1, 3, 4)))


def test_generated_and_real_pyramids_match_in_shape_and_frame_indices(make_config):
    # Batch subsampling on too: both pyramids keep the same videos and frames.
    cfg = make_config(batch_factors=(2, 1, 2))
    spec = PyramidSpec.from_config(cfg)
    torch.manual_seed(0)
    gen = TGANv2Generator(cfg, frames=16).eval()  # eval: BatchNorm per frame, so frames can be compared
    z = sample_z([torch.Generator().manual_seed(s) for s in range(8)], cfg.z_slow_dim, torch.device("cpu"))
    phases = draw_phases(cfg.frame_factors, torch.Generator().manual_seed(3))
    with torch.no_grad():
        fake = gen(z, phases=phases)
        real = real_pyramid(frame_valued_clip(8, 16, cfg.resolution), spec, phases)
        assert [f.shape for f in fake] == [r.shape for r in real]

        # The generator keeps the frames and videos the rule names: a twin with the same weights and no
        # subsampling renders every frame of every video at every level; the pyramid must be its slices.
        twin = TGANv2Generator(make_config(frame_factors=(1, 1, 1)), frames=16).eval()
        twin.load_state_dict(gen.state_dict())
        full = twin(z, phases=(0, 0, 0))
        indices = level_frame_indices(16, cfg.frame_factors, phases)
        strides = level_batch_strides(cfg.batch_factors)
        for level, (f, r) in enumerate(zip(fake, real)):
            torch.testing.assert_close(f, full[level][::strides[level], :, indices[level]])
            torch.testing.assert_close(r[:, 0, :, 0, 0] % 100, torch.tensor(indices[level], dtype=torch.float32)
                                       .expand(r.shape[0], -1))
        # ... and its top level is those frames of the sampled video.
        torch.testing.assert_close(fake[-1], gen.render(z, frames=16)[::strides[-1], :, indices[-1]])


def test_real_pyramid_transform_draws_each_clips_phases_from_its_own_generator():
    """The data layer's transform: a uint8 clip -> its levels in the model's range, with phases drawn from the
    clip's generator (reproducible per clip, and different clips get different phases)."""
    spec = PyramidSpec(frame_factors=(2, 2, 2), batch_factors=(1, 1, 1), resolution=16)
    transform = RealPyramid(spec)
    frames = torch.arange(16, dtype=torch.uint8)[:, None, None, None] * 10  # frame t is the constant 10 t
    clip = frames.expand(16, 16, 16, 3).contiguous()  # [T, R, R, C] uint8, as the dataset gives it
    seen = set()
    for seed in range(20):
        phases = tuple(int(p) for p in np.random.default_rng(seed).integers([2, 2, 2]))
        levels = transform(clip, np.random.default_rng(seed))
        assert levels.keys() == {level_key(level) for level in range(4)}
        for level, (indices, res) in enumerate(zip(level_frame_indices(16, spec.frame_factors, phases),
                                                   spec.resolutions)):
            x = levels[level_key(level)]
            assert x.shape == (3, len(indices), res, res) and x.dtype == torch.float32
            expected = torch.tensor(indices, dtype=torch.float32) * 10 / 127.5 - 1  # layout.to_model's range
            torch.testing.assert_close(x[:, :, 0, 0], expected.expand(3, -1))
        seen.add(phases)
    assert len(seen) > 4  # phases vary from clip to clip


def test_the_training_dataset_carries_each_clips_pyramid(make_config):
    """Backend.training_dataset: the shared dataset, with TGANv2's transform; the levels are the clip's own."""
    from vidgen.core.config import DataConfig, Recipe, RunConfig, TrainConfig
    from vidgen.models.tganv2.backend import TGANv2Backend
    from vidgen.models.tganv2.config import TGANv2SampleConfig

    cfg = make_config()
    recipe = Recipe(run=RunConfig(name="t"), data=DataConfig(resolution=cfg.resolution, frames=16, synthetic_videos=4),
                    model=cfg, train=TrainConfig(), sample=TGANv2SampleConfig())
    dataset = TGANv2Backend(recipe).training_dataset()
    item = dataset[(1, 5)]
    video = item["video"].permute(3, 0, 1, 2).float() / 127.5 - 1  # [C, T, R, R]
    phases = tuple(int(p) for p in np.random.default_rng([5, 2]).integers(cfg.frame_factors))
    for level, expected in enumerate(level_clips(video, PyramidSpec.from_config(cfg), phases)):
        torch.testing.assert_close(item[level_key(level)], expected)
    torch.testing.assert_close(dataset[(1, 5)][level_key(3)], item[level_key(3)])  # a pure function of the key
