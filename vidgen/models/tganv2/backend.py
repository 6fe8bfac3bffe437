"""The TGANv2 backend (Saito et al., IJCV 2020): "train sparsely, generate densely".

Training: the generator renders a pyramid of levels (every frame at the lowest resolution, fewer frames at each
higher one); each real clip arrives as the same pyramid, made in the shared data layer by the backend's clip
transform (pyramid.RealPyramid, its own frame phases per clip as the reference's data loader); one discriminator
per level scores them. The objective is the
reference's "Dirac" updater: the logistic losses over the logits of every level (vidgen.models.gan), and on real
clips a zero-centred gradient penalty summed over the levels and the videos, weighted by model.gp_lambda.

Sampling: the top level only, at every frame, for any length (TGANv2Generator.render), from the EMA generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from vidgen.core.config import Recipe
from vidgen.core.data.dataset import VideoDataset
from vidgen.core.data.labels import check_label_range
from vidgen.models import gan
from vidgen.models.base import Backend, Batch, Phase
from vidgen.models.tganv2.config import TGANv2Config, TGANv2SampleConfig
from vidgen.models.tganv2.discriminator import TGANv2Discriminator
from vidgen.models.tganv2.generator import TGANv2Generator, sample_z
from vidgen.models.tganv2.pyramid import PyramidSpec, RealPyramid, batch_levels, draw_phases, level_key

ADAM_EPS = 8e-8
"""The reference's Adam epsilon (conf/*.yml: 0.00000008)."""


class TGANv2Backend(Backend):
    """networks: {"G": TGANv2Generator, "D": TGANv2Discriminator}; phases: model.n_dis discriminator steps, then
    one generator step, each with its own Adam."""

    ema_networks = ("G",)

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.cfg: TGANv2Config = recipe.model
        with torch.random.fork_rng(devices=[]):  # initialise from the run seed, leaving the global RNG alone
            torch.manual_seed(recipe.run.seed)
            G = TGANv2Generator(self.cfg, frames=recipe.data.frames)
            D = TGANv2Discriminator(self.cfg)
        self.networks = nn.ModuleDict({"G": G, "D": D})
        self.pyramid = PyramidSpec.from_config(self.cfg)

    def phases(self) -> Sequence[Phase]:
        return (*(Phase(f"D_main{i}", optimizer="D") for i in range(self.cfg.n_dis)), Phase("G_main", optimizer="G"))

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        train = self.recipe.train
        return {name: torch.optim.Adam(self.networks[name].parameters(), lr=train.lr, betas=train.betas,
                                       eps=ADAM_EPS) for name in ("G", "D")}

    def clip_transform(self) -> RealPyramid:
        return RealPyramid(self.pyramid)

    def check_dataset(self, dataset: VideoDataset) -> None:
        check_label_range(dataset.num_classes, self.cfg.num_classes)

    def _fakes(self, G: nn.Module, batch: int, label: torch.Tensor | None, phases: tuple[int, ...],
               generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
        z = torch.rand(batch, self.cfg.z_slow_dim, generator=generator, device=device) * 2 - 1  # U(-1, 1)
        return G(z, label, phases=phases)

    def loss(self, phase: str, batch: Batch, nets: Mapping[str, nn.Module],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        G, D = nets["G"], nets["D"]
        real, label = batch["video"], batch.get("label")  # [B, C, T, R, R]
        phases = draw_phases(self.cfg.frame_factors, generator)  # the frames each generated level keeps

        if phase == "G_main":
            fake_logits = torch.cat(D(self._fakes(G, real.shape[0], label, phases, generator, real.device), label))
            loss = gan.generator_loss(fake_logits)
            return loss, {"G/loss": loss.item(), "G/fake_logit": fake_logits.mean().item()}

        if phase.startswith("D_main"):
            with torch.no_grad():
                fakes = self._fakes(G, real.shape[0], label, phases, generator, real.device)
            real_levels = batch_levels([batch[level_key(level)] for level in range(self.cfg.levels)],
                                       self.cfg.batch_factors)
            levels = [level.detach().requires_grad_(True) for level in real_levels]
            real_logits = torch.cat(D(levels, label))
            fake_logits = torch.cat(D(fakes, label))
            adversarial = gan.discriminator_loss(real_logits, fake_logits)
            # "Dirac": lambda x sum over levels and videos of ||d(sum of real logits)/d x_l||².
            penalty = sum(norms.sum() for norms in gan.per_frame_gradient_norms(real_logits, levels))
            loss = adversarial + self.cfg.gp_lambda * penalty
            return loss, {"loss": adversarial.item(), "D/loss": adversarial.item(), "D/penalty": penalty.item(),
                          "D/real_logit": real_logits.mean().item(), "D/fake_logit": fake_logits.mean().item()}

        raise ValueError(f"unknown phase '{phase}'")

    def sample(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], frames: int, device: torch.device,
               options: TGANv2SampleConfig | None = None) -> torch.Tensor:
        """The top level at every frame, [N, 3, frames, R, R], video i from the generator of seeds[i] alone."""
        options = options or self.recipe.sample
        G = nets["G"]
        z = sample_z([torch.Generator(device).manual_seed(seed) for seed in seeds], self.cfg.z_slow_dim, device)
        label = None
        if self.cfg.num_classes:
            label = torch.tensor([options.label if options.label is not None else seed % self.cfg.num_classes
                                  for seed in seeds], device=device)
        was_training = G.training
        G.eval()  # BatchNorm's running statistics: a video depends only on its own z
        try:
            return G.render(z, label, frames).float().clamp(-1, 1)
        finally:
            G.train(was_training)

