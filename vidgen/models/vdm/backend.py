"""The Video Diffusion backend (Ho et al. 2022): a factorized space-time U-Net trained with the continuous-time
diffusion loss and sampled with any sampler of vidgen.models.vdm.sampler (ancestral by default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from vidgen.core.config import Recipe
from vidgen.models.base import Backend, Batch, Phase
from vidgen.models.vdm import diffusion
from vidgen.models.vdm.config import VDMConfig
from vidgen.models.vdm.sampler import per_video_noise, sampler_by_name
from vidgen.models.vdm.unet import UNet3D

VIDEO_CHANNELS = 3
"""RGB: the data pipeline delivers three-channel frames."""


class VDMBackend(Backend):
    """networks: {"unet": UNet3D}; one phase, "main" (the diffusion loss), stepping one AdamW optimizer."""

    ema_networks = ("unet",)
    sample_options = ("sampler",)

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.config: VDMConfig = recipe.model
        # Initialise from the run seed without touching the global random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.run.seed)
            unet = UNet3D(self.config, VIDEO_CHANNELS, recipe.data.resolution)
        self.networks = nn.ModuleDict({"unet": unet})

    def phases(self) -> Sequence[Phase]:
        return (Phase("main", optimizer="main"),)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        train = self.recipe.train
        return {"main": torch.optim.AdamW(self.networks["unet"].parameters(), lr=train.lr, betas=train.betas,
                                          weight_decay=train.weight_decay)}

    def loss(self, phase: str, batch: Batch, nets: Mapping[str, nn.Module],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        if phase != "main":
            raise ValueError(f"VDMBackend has a single phase 'main', got '{phase}'")
        loss = diffusion.diffusion_loss(nets["unet"], batch["video"], generator, prediction=self.config.prediction,
                                        logsnr_min=self.config.logsnr_min, logsnr_max=self.config.logsnr_max)
        return loss, {"loss": loss.item()}

    def sample(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], frames: int, fps: float,
               device: torch.device, steps: int | None = None, *, sampler: str = "ancestral") -> torch.Tensor:
        """sampler: a name in vidgen.models.vdm.sampler.SAMPLERS (ancestral, pc, ddim, heun); the ancestral
        and predictor-corrector samplers take their variance interpolation γ from model.sampler_gamma."""
        del fps  # the model is not conditioned on the frame rate
        sample_fn = sampler_by_name(sampler)  # an unknown name fails before any work
        options = {"gamma": self.config.sampler_gamma} if sampler in ("ancestral", "pc") else {}
        steps = self.recipe.sample.steps if steps is None else steps
        resolution = self.recipe.data.resolution
        unet = nets["unet"]
        generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]
        noise = per_video_noise(generators, (VIDEO_CHANNELS, frames, resolution, resolution), device)  # (N, C, T, H, W)
        t = torch.linspace(1.0, 0.0, steps + 1, device=device)  # noisy -> clean
        logsnrs = diffusion.logsnr_schedule_cosine(t, self.config.logsnr_min, self.config.logsnr_max)

        def denoise(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
            alpha, sigma = (diffusion.broadcast_to(c, z) for c in diffusion.alpha_sigma(logsnr))
            return diffusion.x_from_prediction(z, unet(z, logsnr), alpha, sigma, self.config.prediction)

        was_training = unet.training
        unet.eval()  # no dropout while sampling
        try:
            return sample_fn(denoise, noise, logsnrs, generators, **options)
        finally:
            unet.train(was_training)
