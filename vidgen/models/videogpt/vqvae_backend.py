"""VideoGPT stage 1 as a backend (`videogpt-vqvae`): the 3D VQ-VAE trained on reconstruction, its codebook moved
by exponential moving averages once per optimizer step.

"Sampling" a VQ-VAE reconstructs: video i is clip seed + i of a dataset (the run's own data by default, or
sample.reconstruct), encoded to codes and decoded. Its references are those clips, so `vidgen sample` writes the
originals beside the reconstructions with their PSNR and SSIM, and `vidgen eval` of the run scores the
reconstruction FVD that the paper reports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from vidgen.core.config import Recipe
from vidgen.models.base import Backend, Batch, Phase, TrainingJob
from vidgen.models.videogpt.codebook import CodebookStats, identity
from vidgen.models.videogpt.config import VQVAEConfig, VQVAESampleConfig, check_sample_frames
from vidgen.models.videogpt.vqvae import VQVAE

VIDEO_CHANNELS = 3


@contextlib.contextmanager
def eval_mode(network: nn.Module) -> Iterator[nn.Module]:
    """`network` in eval mode for the block (BatchNorm's running statistics, no dropout), then as it was."""
    was_training = network.training
    network.eval()
    try:
        yield network
    finally:
        network.train(was_training)


class VQVAEBackend(Backend):
    """networks: {"vqvae": VQVAE}; one phase, "main" (reconstruction + commitment), stepping one Adam optimizer.
    The codebook is not a parameter: its EMA update (`Codebook.update`) runs in end_step with the statistics of
    every micro-batch and rank of the step. No EMA copy of the weights (the paper keeps none, and an averaged
    encoder would no longer match the codebook)."""

    ema_networks = ()
    makes_tokens = True

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.config: VQVAEConfig = recipe.model
        c = self.config
        with torch.random.fork_rng(devices=[]):  # initialise from the run seed, leaving the global RNG alone
            torch.manual_seed(recipe.run.seed)
            vqvae = VQVAE(VIDEO_CHANNELS, c.n_codes, c.embedding_dim, c.n_hiddens, c.n_res_layers, c.downsample,
                          c.heads, c.norm, c.commitment_beta, c.ema_decay, c.restart_threshold)
        self.networks = nn.ModuleDict({"vqvae": vqvae})
        self._job: TrainingJob | None = None
        self._step_stats: CodebookStats | None = None
        """The codebook statistics of this step's micro-batches so far (summed)."""

    def phases(self) -> Sequence[Phase]:
        return (Phase("main", optimizer="main"),)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        train = self.recipe.train
        return {"main": torch.optim.Adam(self.networks["vqvae"].parameters(), lr=train.lr, betas=train.betas,
                                         weight_decay=train.weight_decay)}

    def bind_loop(self, job: TrainingJob) -> None:
        self._job = job

    def loss(self, phase: str, batch: Batch, nets: Mapping[str, nn.Module],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        if phase != "main":
            raise ValueError(f"VQVAEBackend has a single phase 'main', got '{phase}'")
        _, losses, stats = nets["vqvae"](batch["video"], generator)
        # Kept for end_step, which applies (or, for a skipped step, drops) the step's statistics.
        self._step_stats = stats if self._step_stats is None else self._step_stats + stats
        return losses["loss"], {key: value.item() for key, value in losses.items()}

    def end_step(self, applied: bool) -> None:
        stats, self._step_stats = self._step_stats, None
        if not applied or stats is None:  # a skipped step moves nothing, the codebook included
            return
        sum_over_ranks = self._job.sum_tensor_over_ranks if self._job else identity
        self.networks["vqvae"].codebook.update(stats, sum_over_ranks, self._job.is_main if self._job else True)

    def encode_tokens(self, videos: torch.Tensor) -> torch.Tensor:
        with eval_mode(self.networks["vqvae"]) as vqvae, torch.no_grad():
            return vqvae.encode(videos)  # (N, T', H', W') long

    # ------------------------------------------------------------------------------------------------------
    # Reconstruction

    def references(self, seeds: Sequence[int], frames: int, device: torch.device,
                   options: VQVAESampleConfig | None = None) -> torch.Tensor:
        """The clips that sample() reconstructs: [N, C, frames, H, W] in [-1, 1]."""
        options = options or self.recipe.sample
        check_sample_frames(frames, self.config.downsample)
        return self.dataset_clips(options.reconstruct, seeds, frames, device)

    def sample(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], frames: int, device: torch.device,
               options: VQVAESampleConfig | None = None) -> torch.Tensor:
        """Reconstructions of the clips of `references`: encoded to codes, decoded, clamped to [-1, 1]."""
        clips = self.references(seeds, frames, device, options)
        with eval_mode(nets["vqvae"]) as vqvae, torch.no_grad():
            return vqvae.decode_codes(vqvae.encode(clips)).float().clamp(-1, 1)
