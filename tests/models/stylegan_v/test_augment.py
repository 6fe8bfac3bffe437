"""Video-consistent discriminator augmentation and ADA's controller."""

from __future__ import annotations

import pytest
import torch

from vidgen.models.stylegan_v.augment import AdaptiveAugment, augment_clips, translate_clips


def clips(batch: int = 16, frames: int = 4, size: int = 8) -> torch.Tensor:
    return torch.rand(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(5)) * 1.6 - 0.8


def test_all_frames_of_a_clip_get_the_same_parameters():
    video = clips()
    out = augment_clips(video, p=1.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == video.shape
    for t in range(video.shape[2]):
        # The draws depend only on the number of clips: augmenting one frame alone reproduces that frame.
        alone = augment_clips(video[:, :, t:t + 1], p=1.0, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out[:, :, t:t + 1], alone)
    # Identical frames stay identical, and different clips are augmented differently.
    still = video[:, :, :1].expand(-1, -1, 4, -1, -1)
    out = augment_clips(still, p=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, out[:, :, :1].expand_as(out))
    changes = (out[:, :, 0] - still[:, :, 0]).abs().mean(dim=(1, 2, 3))
    assert len(set(changes.tolist())) == len(changes)


def test_probability_zero_is_the_identity_and_one_changes_every_clip():
    video = clips()
    assert augment_clips(video, p=0.0) is video
    out = augment_clips(video, p=1.0, generator=torch.Generator().manual_seed(2))
    assert ((out - video).abs().amax(dim=(1, 2, 3, 4)) > 1e-3).all()


def test_augmentation_is_differentiable():
    video = clips().requires_grad_(True)
    augment_clips(video, p=1.0, generator=torch.Generator().manual_seed(3)).square().sum().backward()
    assert video.grad is not None and torch.isfinite(video.grad).all() and float(video.grad.abs().sum()) > 0


def test_integer_translation_mirrors_at_the_border():
    row = torch.arange(5.0).reshape(1, 1, 1, 1, 5)
    shifted = translate_clips(row, torch.tensor([2]), torch.tensor([0]))
    assert shifted.flatten().tolist() == [2.0, 1.0, 0.0, 1.0, 2.0]
    shifted = translate_clips(row, torch.tensor([-1]), torch.tensor([0]))
    assert shifted.flatten().tolist() == [1.0, 2.0, 3.0, 4.0, 3.0]


def test_ada_moves_p_towards_the_target_at_the_configured_speed():
    ada = AdaptiveAugment(p=0.0, target=0.6, interval=4, speed_videos=1000)
    overfit = torch.ones(8)  # D is sure every real clip is real: raise p
    for _ in range(8):
        ada.accumulate(overfit)
    assert ada.p == pytest.approx(2 * 32 / 1000)  # two adjustments of 4 x 8 videos each
    for _ in range(40):
        ada.accumulate(-overfit)  # D rejects the reals: lower p, never below 0
    assert ada.p == 0.0
    ada.p = 0.999
    for _ in range(4):
        ada.accumulate(overfit)
    assert ada.p == 1.0
