"""The Video Diffusion backend (Ho et al. 2022): a factorized space-time U-Net trained with the continuous-time
diffusion loss, jointly on videos and images when asked, optionally class-conditional; sampled with any sampler
of vidgen.models.vdm.sampler, with classifier-free guidance, and extended in time or space by reconstruction
guidance (vidgen.models.vdm.conditioning)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from vidgen.core.config import Recipe
from vidgen.core.data.dataset import VideoDataset
from vidgen.core.data.labels import check_label_range
from vidgen.core.layout import read_video_file
from vidgen.errors import UserError
from vidgen.models.base import Backend, Batch, Phase, Prediction
from vidgen.models.vdm import diffusion
from vidgen.models.vdm.conditioning import extension_denoiser, upsampling_denoiser
from vidgen.models.vdm.config import VDMConfig, VDMSampleConfig
from vidgen.models.vdm.sampler import SAMPLERS, DenoiseFn, per_video_noise
from vidgen.models.vdm.unet import UNet3D

"""RGB: the data pipeline delivers three-channel frames."""


def joint_frame_mask(video_frames: int, image_frames: int, device: torch.device) -> torch.Tensor:
    """Temporal attention mask for a clip followed by independent image frames (paper §3.1): the clip's
    frames see each other, each image frame sees only itself. bool (T, T), T = video_frames + image_frames."""
    total = video_frames + image_frames
    mask = torch.eye(total, dtype=torch.bool, device=device)
    mask[:video_frames, :video_frames] = True
    return mask


class _SamplingBatch(NamedTuple):
    run: Callable[[DenoiseFn, Sequence[int]], torch.Tensor]
    """run(denoise_fn, shape): a batch of videos of `shape`, one per seed, each from its seed's own noise."""
    denoise: DenoiseFn
    """The network's x̂, with classifier-free guidance."""
    generators: list[torch.Generator]
    """One per seed; extension windows draw their replacement noise from them too."""


class VDMBackend(Backend):
    """networks: {"unet": UNet3D}; one phase, "main" (the diffusion loss), stepping one AdamW optimizer."""

    ema_networks = ("unet",)

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.config: VDMConfig = recipe.model
        # Initialise from the run seed without touching the global random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.run.seed)
            unet = UNet3D(self.config, recipe.data.channels, recipe.data.resolution)
        unet.grad_checkpointing = recipe.train.grad_checkpointing
        self.networks = nn.ModuleDict({"unet": unet})

    def phases(self) -> Sequence[Phase]:
        return (Phase("main", optimizer="main"),)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        train = self.recipe.train
        return {"main": torch.optim.AdamW(self.networks["unet"].parameters(), lr=train.lr, betas=train.betas,
                                          weight_decay=train.weight_decay)}

    def check_dataset(self, dataset: VideoDataset) -> None:
        check_label_range(dataset.num_classes, self.config.num_classes)

    def loss(self, phase: str, batch: Batch, nets: Mapping[str, nn.Module],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        if phase != "main":
            raise ValueError(f"VDMBackend has a single phase 'main', got '{phase}'")
        video = batch["video"]  # (B, C, F + M, H, W): the clip, then M independent image frames
        image_frames = self.recipe.data.image_frames
        mask = joint_frame_mask(video.shape[2] - image_frames, image_frames, video.device) if image_frames else None
        label = self._drop_labels(batch["label"], generator) if self.config.num_classes else None
        unet = nets["unet"]

        def network(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
            return unet(z, logsnr, label=label, frame_mask=mask)

        # The loss covers every frame, image frames included (paper §3.1).
        loss = diffusion.diffusion_loss(network, video, generator, prediction=self.config.prediction,
                                        logsnr_min=self.config.logsnr_min, logsnr_max=self.config.logsnr_max,
                                        min_snr_gamma=self.config.min_snr_gamma,
                                        noise_correlation=self.config.noise_correlation,
                                        clip_frames=video.shape[2] - image_frames)
        return loss, {"loss": loss.item()}

    def _drop_labels(self, label: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Replace each label by "no label" with probability model.label_dropout (classifier-free guidance)."""
        drop = torch.rand(label.shape, generator=generator, device=label.device) < self.config.label_dropout
        return torch.where(drop, torch.full_like(label, self.config.num_classes), label)

    # ------------------------------------------------------------------------------------------------------
    # Sampling

    def sample(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], frames: int, device: torch.device,
               options: VDMSampleConfig | None = None) -> torch.Tensor:
        """Videos [N, C, frames, H, W] with options.sampler, one random generator per seed. More frames than a
        training clip are made by extending a first clip window by window, unless model.long_videos is "joint";
        options.extend continues a given video instead, and options.upsample generates a low-resolution video at
        the model's resolution (keeping its length, not `frames`)."""
        options = options or self.recipe.sample
        channels = self.recipe.data.channels
        if options.upsample is not None:
            return self.upsample(nets, seeds, read_video_file(options.upsample, device, channels), options)
        if options.extend is not None:
            return self.extend(nets, seeds, read_video_file(options.extend, device, channels), frames, options)
        resolution = self.recipe.data.resolution
        window = self.recipe.data.frames
        with self._sampling(nets, seeds, device, options) as batch:
            if frames <= window or self.config.long_videos == "joint":
                return batch.run(batch.denoise, (channels, frames, resolution, resolution))
            first = batch.run(batch.denoise, (channels, window, resolution, resolution))  # (N, C, F, H, W)
            return self._extend(batch, first, frames, options)

    def extend(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], video: torch.Tensor, frames: int,
               options: VDMSampleConfig | None = None) -> torch.Tensor:
        """Continue `video` (C, T, H, W) in [-1, 1] to `frames` frames, window by window (paper §3.1), each window
        conditioned on the last options.cond_frames frames so far: [N, C, frames, H, W]."""
        options = options or self.recipe.sample
        with self._sampling(nets, seeds, video.device, options) as batch:
            return self._extend(batch, video, frames, options)

    @property
    def predicts(self) -> bool:
        return True

    def context_frames(self) -> int:
        return self.recipe.sample.cond_frames or self.recipe.data.frames // 2

    def predict(self, nets: Mapping[str, nn.Module], context: torch.Tensor, seeds: Sequence[int], frames: int,
                device: torch.device, options: VDMSampleConfig | None = None) -> Prediction:
        """Continue each context clip window by window, as extend() does, each window conditioned on the last
        options.cond_frames frames so far (default: as many as the context has, at most half a window)."""
        options = options or self.recipe.sample
        if options.cond_frames is None:
            options = dataclasses.replace(options, cond_frames=min(context.shape[2], self.recipe.data.frames // 2))
        with self._sampling(nets, seeds, device, options) as batch:
            return Prediction(self._extend(batch, context, frames, options))

    def upsample(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], low: torch.Tensor,
                 options: VDMSampleConfig | None = None) -> torch.Tensor:
        """Generate the low-resolution video `low` (C, T, h, w) at the model's resolution by reconstruction
        guidance (paper §4.3.3): [N, C, T, H, W]."""
        options = options or self.recipe.sample
        resolution = self.recipe.data.resolution
        height, width = low.shape[-2:]
        if max(height, width) >= resolution:
            raise UserError(f"--upsample needs a model trained at a higher resolution than the input: the input "
                            f"is {width}x{height}, the model {resolution}x{resolution}; give a smaller video or "
                            f"a model trained at a larger data.resolution")
        low = low.expand(len(seeds), *low.shape)  # (N, C, T, h, w)
        with self._sampling(nets, seeds, low.device, options) as batch:
            return batch.run(upsampling_denoiser(batch.denoise, low, self._recon_weight(options)),
                             (self.recipe.data.channels, low.shape[2], resolution, resolution))

    @contextlib.contextmanager
    def _sampling(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], device: torch.device,
                  options: VDMSampleConfig) -> Iterator[_SamplingBatch]:
        """What sampling one batch of seeds needs, with the U-Net in eval mode (no dropout) meanwhile."""
        sample_fn = SAMPLERS[options.sampler]
        correlation = self.config.noise_correlation
        kwargs: dict[str, float] = {"frame_correlation": correlation}
        if options.sampler in ("ancestral", "pc"):
            kwargs["gamma"] = self.config.sampler_gamma
        elif options.sampler == "ddim":
            kwargs["eta"] = self.config.ddim_eta if options.eta is None else options.eta
        generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]
        guidance = self.config.guidance if options.guidance is None else options.guidance
        denoise = self._denoiser(nets["unet"], self._labels(seeds, options.label, device), guidance)
        logsnrs = diffusion.logsnr_schedule_cosine(torch.linspace(1.0, 0.0, options.steps + 1, device=device),
                                                   self.config.logsnr_min, self.config.logsnr_max)  # noisy -> clean

        def run(denoise_fn: DenoiseFn, shape: Sequence[int]) -> torch.Tensor:
            noise = per_video_noise(generators, shape, device, frame_correlation=correlation)  # (N, *shape)
            return sample_fn(denoise_fn, noise, logsnrs, generators, **kwargs)

        unet = nets["unet"]
        was_training = unet.training
        unet.eval()
        try:
            yield _SamplingBatch(run, denoise, generators)
        finally:
            unet.train(was_training)

    def _recon_weight(self, options: VDMSampleConfig) -> float:
        return self.config.guidance_recon if options.guidance_recon is None else options.guidance_recon

    def _denoiser(self, unet: nn.Module, label: torch.Tensor | None, guidance: float) -> DenoiseFn:
        """x̂(z, λ) of the network, with classifier-free guidance x̂ = (1 + w) x̂(z, c) − w x̂(z) when w > 0
        (conditional and unconditional halves evaluated as one batch)."""
        prediction = self.config.prediction

        def denoise(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
            alpha, sigma = (diffusion.broadcast_to(c, z) for c in diffusion.alpha_sigma(logsnr))
            if label is None or guidance == 0:
                return diffusion.x_from_prediction(z, unet(z, logsnr, label=label), alpha, sigma, prediction)
            no_label = torch.full_like(label, self.config.num_classes)
            both = unet(torch.cat([z, z]), torch.cat([logsnr, logsnr]), label=torch.cat([label, no_label]))
            conditional, unconditional = both.chunk(2)
            guided = (1 + guidance) * conditional - guidance * unconditional  # affine in ε, so also in v and x̂
            return diffusion.x_from_prediction(z, guided, alpha, sigma, prediction)

        return denoise

    def _labels(self, seeds: Sequence[int], label: int | None, device: torch.device) -> torch.Tensor | None:
        """The class of each video (class-conditional models): `label`, else (seed mod classes)."""
        classes = self.config.num_classes
        if not classes:
            return None
        values = [label if label is not None else seed % classes for seed in seeds]
        return torch.tensor(values, dtype=torch.long, device=device)

    def _extend(self, batch: _SamplingBatch, video: torch.Tensor, frames: int,
                options: VDMSampleConfig) -> torch.Tensor:
        """Continue `video` (C, T, H, W), or each of a batch (N, C, T, H, W), to `frames` frames window by
        window (paper §3.1, "autoregressive extension")."""
        resolution = self.recipe.data.resolution
        window = self.recipe.data.frames
        known = options.cond_frames or window // 2
        generators = batch.generators
        channels, length, height, width = video.shape[-4:]
        if (height, width) != (resolution, resolution):
            raise UserError(f"--extend video is {width}x{height} but the model makes {resolution}x{resolution}; "
                            f"resize it first (e.g. ffmpeg -i IN -vf scale={resolution}:{resolution} OUT.mp4)")
        if not 0 < known < window:
            raise UserError(f"extending a video needs training clips of 2 or more frames (data.frames is {window})")
        if length < known:
            raise UserError(f"--extend video has {length} frames, fewer than the {known} conditioning frames; "
                            f"give a longer video or lower --cond-frames")
        if frames <= length:
            raise UserError(f"--frames ({frames}) must exceed the --extend video's {length} frames")
        out = video.expand(len(generators), channels, length, height, width)  # (N, C, T, H, W), a view when shared
        while out.shape[2] < frames:
            new = min(window - known, frames - out.shape[2])
            context = out[:, :, -known:]  # (N, C, K, H, W)
            window_denoise = extension_denoiser(batch.denoise, context, options.cond_method,
                                                self._recon_weight(options), generators, self.config.noise_correlation)
            generated = batch.run(window_denoise, (channels, known + new, height, width))  # (N, C, K + new, H, W)
            out = torch.cat([out, generated[:, :, known:]], dim=2)
        return out
