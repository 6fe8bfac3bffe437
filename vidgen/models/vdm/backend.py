"""The Video Diffusion backend (Ho et al. 2022): a factorized space-time U-Net trained with the continuous-time
diffusion loss, jointly on videos and images when asked, optionally class-conditional; sampled with any sampler
of vidgen.models.vdm.sampler, with classifier-free guidance, and extended in time or space by reconstruction
guidance (vidgen.models.vdm.conditioning)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from vidgen.core.config import Recipe
from vidgen.core.data.dataset import VideoDataset
from vidgen.errors import UserError
from vidgen.models.base import Backend, Batch, Phase
from vidgen.models.vdm import diffusion
from vidgen.models.vdm.conditioning import COND_METHODS, CondMethod, extension_denoiser, upsampling_denoiser
from vidgen.models.vdm.config import VDMConfig
from vidgen.models.vdm.sampler import DenoiseFn, per_video_noise, sampler_by_name
from vidgen.models.vdm.unet import UNet3D

VIDEO_CHANNELS = 3
"""RGB: the data pipeline delivers three-channel frames."""


def joint_frame_mask(video_frames: int, image_frames: int, device: torch.device) -> torch.Tensor:
    """Temporal attention mask for a clip followed by independent image frames (paper §3.1): the clip's
    frames see each other, each image frame sees only itself. bool (T, T), T = video_frames + image_frames."""
    total = video_frames + image_frames
    mask = torch.eye(total, dtype=torch.bool, device=device)
    mask[:video_frames, :video_frames] = True
    return mask


class VDMBackend(Backend):
    """networks: {"unet": UNet3D}; one phase, "main" (the diffusion loss), stepping one AdamW optimizer."""

    ema_networks = ("unet",)
    sample_options = ("sampler", "eta", "label", "guidance", "extend", "upsample", "cond_method", "cond_frames",
                      "guidance_recon")

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.config: VDMConfig = recipe.model
        # Initialise from the run seed without touching the global random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.run.seed)
            unet = UNet3D(self.config, VIDEO_CHANNELS, recipe.data.resolution)
        unet.grad_checkpointing = recipe.train.grad_checkpointing
        self.networks = nn.ModuleDict({"unet": unet})

    def phases(self) -> Sequence[Phase]:
        return (Phase("main", optimizer="main"),)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        train = self.recipe.train
        return {"main": torch.optim.AdamW(self.networks["unet"].parameters(), lr=train.lr, betas=train.betas,
                                          weight_decay=train.weight_decay)}

    def check_dataset(self, dataset: VideoDataset) -> None:
        if dataset.num_classes > self.config.num_classes:
            raise UserError(f"the dataset has labels 0..{dataset.num_classes - 1} but model.num_classes is "
                            f"{self.config.num_classes}; set model.num_classes: {dataset.num_classes}")

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

    def sample(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], frames: int, fps: float,
               device: torch.device, steps: int | None = None, *, sampler: str = "ancestral",
               eta: float | None = None, label: int | None = None, guidance: float | None = None,
               extend: torch.Tensor | None = None, upsample: torch.Tensor | None = None,
               cond_method: str = "reconstruction",
               cond_frames: int | None = None, guidance_recon: float | None = None) -> torch.Tensor:
        """sampler: a name in vidgen.models.vdm.sampler.SAMPLERS (ancestral, pc, ddim, heun); eta: DDIM's
        noise (None: model.ddim_eta).

        label: the class of every video (class-conditional models; None: video i gets class seed_i mod
        num_classes); guidance: classifier-free guidance weight (None: model.guidance).
        extend: a video (C, T, H, W) in [-1, 1] to continue to `frames` frames in all, window by window, each
        window conditioned on the last `cond_frames` frames so far (default: half the training clip). Without
        it, more frames than a training clip are made the same way from a first sampled clip, unless
        model.long_videos is "joint".
        upsample: a low-resolution video (C, T, h, w) to generate at the model's resolution.
        cond_method / guidance_recon: how extend and upsample condition (see conditioning.py) and w_r."""
        sample_fn = sampler_by_name(sampler)  # an unknown name fails before any work
        if cond_method not in COND_METHODS:
            raise UserError(f"unknown conditioning method '{cond_method}'; known: {', '.join(COND_METHODS)}")
        if extend is not None and upsample is not None:
            raise UserError("--extend and --upsample cannot be combined; extend first, then upsample the result")
        del fps  # the model is not conditioned on the frame rate
        correlation = self.config.noise_correlation
        options = {"frame_correlation": correlation}
        if sampler in ("ancestral", "pc"):
            options["gamma"] = self.config.sampler_gamma
        elif sampler == "ddim":
            options["eta"] = self.config.ddim_eta if eta is None else eta
        elif eta is not None:
            raise UserError(f"--eta sets the DDIM sampler's noise and does not apply to --sampler {sampler}; "
                            "add --sampler ddim")
        steps = self.recipe.sample.steps if steps is None else steps
        generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]
        denoise = self._denoiser(nets["unet"], self._labels(seeds, label, device),
                                 self.config.guidance if guidance is None else guidance)
        weight = self.config.guidance_recon if guidance_recon is None else guidance_recon
        logsnrs = diffusion.logsnr_schedule_cosine(torch.linspace(1.0, 0.0, steps + 1, device=device),
                                                   self.config.logsnr_min, self.config.logsnr_max)  # noisy -> clean

        def run(denoise_fn: DenoiseFn, shape: Sequence[int]) -> torch.Tensor:
            noise = per_video_noise(generators, shape, device, frame_correlation=correlation)  # (N, *shape)
            return sample_fn(denoise_fn, noise, logsnrs, generators, **options)

        resolution = self.recipe.data.resolution
        unet = nets["unet"]
        was_training = unet.training
        unet.eval()  # no dropout while sampling
        try:
            if upsample is not None:
                if cond_method == "replacement":
                    raise UserError("--cond-method replacement only applies to --extend; super-resolution "
                                    "conditions by reconstruction guidance")
                low = self._check_upsample_input(upsample)
                low = low.to(device).expand(len(seeds), *low.shape)  # (N, C, T, h, w)
                return run(upsampling_denoiser(denoise, low, weight),
                           (VIDEO_CHANNELS, low.shape[2], resolution, resolution))
            if extend is not None:
                return self._extend(run, denoise, extend.to(device), frames, cond_method, weight, cond_frames,
                                    generators)
            window = self.recipe.data.frames
            if frames <= window or self.config.long_videos == "joint":
                return run(denoise, (VIDEO_CHANNELS, frames, resolution, resolution))
            first = run(denoise, (VIDEO_CHANNELS, window, resolution, resolution))  # (N, C, F, H, W)
            return self._extend(run, denoise, first, frames, cond_method, weight, cond_frames, generators)
        finally:
            unet.train(was_training)

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
        classes = self.config.num_classes
        if not classes:
            if label is not None:
                raise UserError("--class needs a class-conditional model (model.num_classes > 0); this one is "
                                "unconditional")
            return None
        if label is not None and not 0 <= label < classes:
            raise UserError(f"--class {label} is out of range; this model has classes 0..{classes - 1}")
        values = [label if label is not None else seed % classes for seed in seeds]
        return torch.tensor(values, dtype=torch.long, device=device)

    def _check_upsample_input(self, low: torch.Tensor) -> torch.Tensor:
        resolution = self.recipe.data.resolution
        height, width = low.shape[-2:]
        if max(height, width) >= resolution:
            raise UserError(f"--upsample needs a model trained at a higher resolution than the input: the input "
                            f"is {width}x{height}, the model {resolution}x{resolution}; give a smaller video or "
                            f"a model trained at a larger data.resolution")
        return low

    def _extend(self, run: Callable[[DenoiseFn, Sequence[int]], torch.Tensor], denoise: DenoiseFn,
                video: torch.Tensor, frames: int, method: CondMethod, weight: float, cond_frames: int | None,
                generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Continue `video` (C, T, H, W), or each of a batch (N, C, T, H, W), to `frames` frames window by
        window (paper §3.1, "autoregressive extension"); `run` samples a batch of windows with a denoiser."""
        resolution = self.recipe.data.resolution
        window = self.recipe.data.frames
        known = cond_frames or window // 2
        num = len(generators)
        channels, length, height, width = video.shape[-4:]
        if (height, width) != (resolution, resolution):
            raise UserError(f"--extend video is {width}x{height} but the model makes {resolution}x{resolution}; "
                            f"resize it first (e.g. ffmpeg -i IN -vf scale={resolution}:{resolution} OUT.mp4)")
        if not 0 < known < window:
            raise UserError(f"--cond-frames must lie in 1..{window - 1} (the window is the training clip of "
                            f"{window} frames), got {known}")
        if length < known:
            raise UserError(f"--extend video has {length} frames, fewer than the {known} conditioning frames; "
                            f"give a longer video or lower --cond-frames")
        if frames <= length:
            raise UserError(f"--frames ({frames}) must exceed the --extend video's {length} frames")
        out = video.expand(num, channels, length, height, width)  # (N, C, T, H, W), a view when shared
        while out.shape[2] < frames:
            new = min(window - known, frames - out.shape[2])
            context = out[:, :, -known:]  # (N, C, K, H, W)
            window_denoise = extension_denoiser(denoise, context, method, weight, generators,
                                                self.config.noise_correlation)
            generated = run(window_denoise, (channels, known + new, height, width))  # (N, C, K + new, H, W)
            out = torch.cat([out, generated[:, :, known:]], dim=2)
        return out
