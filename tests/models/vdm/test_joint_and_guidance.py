"""Joint image-video training, class conditioning with classifier-free guidance, extension and upsampling
through the backend, and gradient checkpointing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidgen.core.config import DataConfig, TrainConfig
from vidgen.core.data.dataset import build_dataset
from vidgen.errors import UserError
from vidgen.models.vdm.backend import VDMBackend, joint_frame_mask
from vidgen.models.vdm.unet import UNet3D

CPU = torch.device("cpu")


def conditional(recipe, classes: int = 3, **model):
    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, labels=True),
                               model=dataclasses.replace(recipe.model, num_classes=classes, **model))


def test_joint_mask_makes_appended_image_frames_independent(tiny_config, randomize_weights):
    unet = randomize_weights(UNet3D(tiny_config, video_channels=3, resolution=16))
    mask = joint_frame_mask(3, 2, CPU)  # frames 0-2 a clip, 3 and 4 images
    z = torch.randn(1, 3, 5, 16, 16)
    logsnr = torch.zeros(1)
    with torch.no_grad():
        base = unet(z, logsnr, frame_mask=mask)
        image_changed = z.clone()
        image_changed[:, :, 4] = torch.randn(1, 3, 16, 16)
        out = unet(image_changed, logsnr, frame_mask=mask)
        torch.testing.assert_close(out[:, :, :4], base[:, :, :4])  # neither the clip nor the other image moves
        assert not torch.allclose(out[:, :, 4], base[:, :, 4])
        clip_changed = z.clone()
        clip_changed[:, :, 2] = torch.randn(1, 3, 16, 16)
        out = unet(clip_changed, logsnr, frame_mask=mask)
        assert not torch.allclose(out[:, :, 0], base[:, :, 0], atol=1e-4)  # clip frames still see each other
        torch.testing.assert_close(out[:, :, 3:], base[:, :, 3:])


def test_joint_training_loss_covers_the_image_frames(tiny_recipe):
    recipe = dataclasses.replace(tiny_recipe, data=dataclasses.replace(tiny_recipe.data, image_frames=2))
    backend = VDMBackend(recipe)
    dataset = build_dataset(dataclasses.replace(recipe.data, synthetic_videos=8, workers=0), seed=0)
    video = torch.stack([dataset[(i, i)]["video"] for i in range(2)])  # (2, 6, 16, 16, 3)
    batch = {"video": video.permute(0, 4, 1, 2, 3).float() / 127.5 - 1}
    seen = []
    unet = backend.networks["unet"]
    hook = unet.register_forward_hook(lambda module, args, kwargs, out: seen.append(kwargs["frame_mask"]),
                                      with_kwargs=True)
    loss, _ = backend.loss("main", batch, backend.networks, torch.Generator().manual_seed(0))
    hook.remove()
    assert torch.equal(seen[0], joint_frame_mask(4, 2, CPU))
    # The image frames attend only to themselves, so changing one changes no clip frame's prediction: the
    # loss moves only if the image frames are part of it.
    changed = batch["video"].clone()
    changed[:, :, -1] = -changed[:, :, -1]
    loss_changed, _ = backend.loss("main", {"video": changed}, backend.networks, torch.Generator().manual_seed(0))
    assert abs(loss_changed.item() - loss.item()) > 1e-5  # (it moves by about 5e-4 here)


def test_classifier_free_guidance(tiny_recipe, randomize_weights):
    recipe = conditional(tiny_recipe)
    backend = VDMBackend(recipe)
    nets = {"unet": randomize_weights(backend.networks["unet"])}
    plain = backend.sample(nets, [0, 1], 3, CPU, recipe.sample_options(sampler="ddim", label=2))
    unguided = backend.sample(nets, [0, 1], 3, CPU, recipe.sample_options(sampler="ddim", label=2, guidance=0.0))
    torch.testing.assert_close(unguided, plain)  # model.guidance defaults to 0: w = 0 is the conditional model

    # w > 0 follows x̂ = (1 + w) x̂(z, c) − w x̂(z), checked on one denoiser call.
    label = torch.tensor([2, 0])
    denoise = backend._denoiser(nets["unet"], label, guidance=1.5)
    z, logsnr = torch.randn(2, 3, 3, 16, 16), torch.tensor([0.5, -1.0])
    cond = backend._denoiser(nets["unet"], label, guidance=0.0)(z, logsnr)
    uncond = backend._denoiser(nets["unet"], torch.full_like(label, 3), guidance=0.0)(z, logsnr)
    torch.testing.assert_close(denoise(z, logsnr), 2.5 * cond - 1.5 * uncond, atol=1e-5, rtol=1e-5)
    other = backend.sample(nets, [0, 1], 3, CPU, recipe.sample_options(sampler="ddim", label=1))
    assert not torch.allclose(other, plain)  # the label matters


def test_label_dropout_rate(tiny_recipe):
    backend = VDMBackend(conditional(tiny_recipe, label_dropout=0.25))
    dropped = backend._drop_labels(torch.zeros(20_000, dtype=torch.long), torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0, 3}
    assert abs((dropped == 3).float().mean().item() - 0.25) < 0.015  # 3.5 binomial standard deviations


def test_class_errors(tiny_recipe):
    for options in ({"label": 1}, {"guidance": 1.0}):
        with pytest.raises(UserError, match="needs a class-conditional model"):
            tiny_recipe.sample_options(**options)
    recipe = conditional(tiny_recipe)
    with pytest.raises(UserError, match="out of range; this model has classes 0..2"):
        recipe.sample_options(label=3)
    backend = VDMBackend(recipe)
    dataset = build_dataset(DataConfig(labels=True, resolution=16, frames=4, synthetic_videos=30,
                                       synthetic_max_shapes=1), seed=0)
    with pytest.raises(UserError, match="set model.num_classes: 4"):
        backend.check_dataset(dataset)


def test_extension_keeps_the_input_and_adds_frames(tiny_recipe, randomize_weights):
    backend = VDMBackend(tiny_recipe)  # training clips of 4 frames: windows of 2 known + 2 new
    nets = {"unet": randomize_weights(backend.networks["unet"])}
    video = torch.rand(3, 3, 16, 16) * 2 - 1  # (C, T, H, W)
    for method in ("reconstruction", "replacement"):
        out = backend.extend(nets, [0, 1], video, 8, tiny_recipe.sample_options(cond_method=method))
        assert out.shape == (2, 3, 8, 16, 16)
        torch.testing.assert_close(out[:, :, :3], video.expand(2, -1, -1, -1, -1), rtol=0, atol=0)
        assert not torch.allclose(out[0, :, 3:], out[1, :, 3:])  # each seed its own continuation

    # Longer than a clip without --extend: a first clip, then extension; also under inference_mode, as metrics
    # sample (guidance needs gradients there).
    with torch.inference_mode():
        long = backend.sample(nets, [0], 7, CPU)
    assert long.shape == (1, 3, 7, 16, 16)


@pytest.mark.parametrize("video, match", [
    (torch.zeros(3, 4, 8, 8), "is 8x8 but the model makes 16x16"),
    (torch.zeros(3, 1, 16, 16), "has 1 frames, fewer than the 2 conditioning frames"),
    (torch.zeros(3, 9, 16, 16), r"--frames \(8\) must exceed"),
])
def test_extension_errors(tiny_recipe, video, match):
    backend = VDMBackend(tiny_recipe)
    with pytest.raises(UserError, match=match):
        backend.extend(backend.networks, [0], video, 8)


def test_upsampling_needs_a_smaller_input(tiny_recipe):
    backend = VDMBackend(tiny_recipe)
    with pytest.raises(UserError, match="needs a model trained at a higher resolution"):
        backend.upsample(backend.networks, [0], torch.zeros(3, 2, 16, 16))


@pytest.mark.parametrize("options, match", [
    ({"cond_frames": 4}, r"sample.cond_frames \(--cond-frames\) must lie in 1..3"),
    ({"upsample": "low.mp4", "cond_method": "replacement"}, "only applies to extension"),
    ({"upsample": "low.mp4", "extend": "clip.mp4"}, "cannot be combined"),
    ({"cond_method": "inpaint"}, "'sample.cond_method' must be one of reconstruction, replacement"),
])
def test_conditioning_option_errors(tiny_recipe, options, match):
    with pytest.raises(UserError, match=match):
        tiny_recipe.sample_options(**options)


def test_upsampling_output_shape(tiny_recipe, randomize_weights):
    backend = VDMBackend(tiny_recipe)
    nets = {"unet": randomize_weights(backend.networks["unet"])}
    out = backend.upsample(nets, [0, 1], torch.zeros(3, 3, 8, 8))
    assert out.shape == (2, 3, 3, 16, 16)


def saved_activation_bytes(unet: UNet3D, z: torch.Tensor, logsnr: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Bytes autograd keeps for the backward pass, and the loss."""
    saved = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = unet(z, logsnr).square().mean()
    return sum(saved), loss


def test_gradient_checkpointing_changes_memory_not_gradients(tiny_config, randomize_weights):
    config = dataclasses.replace(tiny_config, dropout=0.1)  # dropout must replay identically in the recompute
    unet = randomize_weights(UNet3D(config, video_channels=3, resolution=16))
    z, logsnr = torch.randn(2, 3, 4, 16, 16), torch.tensor([0.3, -2.0])
    grads = []
    kept = []
    for checkpointing in (False, True):
        unet.grad_checkpointing = checkpointing
        unet.zero_grad()
        torch.manual_seed(0)
        bytes_saved, loss = saved_activation_bytes(unet, z, logsnr)
        loss.backward()
        kept.append(bytes_saved)
        grads.append([p.grad.clone() for p in unet.parameters()])
    for plain, checkpointed in zip(*grads):
        torch.testing.assert_close(checkpointed, plain, rtol=0, atol=1e-6)
    assert kept[1] < 0.5 * kept[0]  # only block inputs are kept


def test_grad_checkpointing_is_set_from_the_recipe(tiny_recipe):
    recipe = dataclasses.replace(tiny_recipe, train=TrainConfig(grad_checkpointing=True))
    assert VDMBackend(recipe).networks["unet"].grad_checkpointing
    assert not VDMBackend(tiny_recipe).networks["unet"].grad_checkpointing
