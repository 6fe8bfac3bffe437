"""VideoGPT stage 2 as a backend (`videogpt`): a GPT prior over the code grid of a frozen stage-1 VQ-VAE.

The VQ-VAE comes from the run that model.vqvae names (vidgen/upstream.py loads it). It sits in this backend's
networks as core.frozen.Frozen: no gradient, always in eval mode, embedded in every checkpoint. Training reads a
token dataset's codes (`vidgen data prepare --format tokens`) or encodes the clips on the fly; sampling draws codes
token by token with the prior's key/value cache and decodes them with the VQ-VAE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from vidgen.core.config import Recipe
from vidgen.core.data.dataset import VideoDataset
from vidgen.core.data.labels import check_label_range
from vidgen.core.data.tokens import TokenDataset
from vidgen.core.frozen import Frozen
from vidgen.errors import UserError
from vidgen.models.base import Backend, Batch, FrozenStage, Phase, Prediction
from vidgen.models.videogpt import gpt
from vidgen.models.videogpt.config import (VideoGPTConfig, VideoGPTSampleConfig, check_sample_frames,
                                            divisibility_problem)
from vidgen.models.videogpt.gpt import PriorConfig, VideoGPTPrior
from vidgen.models.videogpt.vqvae import VQVAE

VIDEO_CHANNELS = 3


@contextlib.contextmanager
def dropout_from(generator: torch.Generator) -> Iterator[None]:
    """Dropout (nn.Dropout, attention dropout) draws from torch's global generator, which takes no generator
    argument; seed it from the loop's noise stream for the block, then restore it. So each rank draws its own
    masks, and a resumed or rank-emulating run draws the same ones as an unbroken run."""
    devices = [generator.device] if generator.device.type == "cuda" else []
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=devices, device_type=generator.device.type):
        torch.manual_seed(seed)
        yield


class VideoGPTBackend(Backend):
    """networks: {"prior": VideoGPTPrior, "vqvae": Frozen(VQVAE)}; one phase, "main" (the codes' negative
    log-likelihood in nats per code), stepping one AdamW optimizer over the prior."""

    ema_networks = ("prior",)
    trains_on_tokens = True

    def __init__(self, recipe: Recipe, upstream: FrozenStage) -> None:
        super().__init__(recipe, upstream)
        self.config: VideoGPTConfig = recipe.model
        vqvae: VQVAE = upstream.networks["vqvae"]
        stage_data = upstream.recipe.data
        problem = divisibility_problem(recipe.data.frames, recipe.data.resolution, vqvae.downsample)
        if problem:
            raise UserError(problem)
        if recipe.data.resolution != stage_data.resolution:
            raise UserError(f"data.resolution {recipe.data.resolution} differs from the VQ-VAE's "
                            f"({stage_data.resolution}, model.vqvae: {self.config.vqvae}); set data.resolution: "
                            f"{stage_data.resolution}")
        c = self.config
        prior_config = PriorConfig(
            n_codes=vqvae.codebook.n_codes,
            latent_shape=vqvae.latent_shape(recipe.data.frames, recipe.data.resolution, recipe.data.resolution),
            width=c.width, heads=c.heads, layers=c.layers, dropout=c.dropout, attn_dropout=c.attn_dropout,
            num_classes=c.num_classes, context_frames=c.context_frames, context_channels=VIDEO_CHANNELS,
            context_downsample=c.context_downsample, context_width=c.context_width)
        with torch.random.fork_rng(devices=[]):  # initialise from the run seed, leaving the global RNG alone
            torch.manual_seed(recipe.run.seed)
            prior = VideoGPTPrior(prior_config)
        prior.grad_checkpointing = recipe.train.grad_checkpointing
        self.networks = nn.ModuleDict({"prior": prior, "vqvae": Frozen(vqvae)})

    def phases(self) -> Sequence[Phase]:
        return (Phase("main", optimizer="main"),)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        train = self.recipe.train
        return {"main": torch.optim.AdamW(self.networks["prior"].parameters(), lr=train.lr, betas=train.betas,
                                          weight_decay=train.weight_decay)}

    def check_dataset(self, dataset: VideoDataset | TokenDataset) -> None:
        if isinstance(dataset, TokenDataset):
            source = self.recipe.data.source
            if dataset.encoder_sha256 != self.upstream.record["sha256"]:
                raise UserError(f"'{source}' was encoded by another VQ-VAE ({dataset.meta['encoder']['checkpoint']}, "
                                f"sha256 {dataset.encoder_sha256[:12]}) than model.vqvae ("
                                f"{self.upstream.record['checkpoint']}, sha256 {self.upstream.record['sha256'][:12]}); "
                                f"prepare it again with --vqvae {self.config.vqvae}")
            if self.config.context_frames:
                raise UserError(f"a frame-conditioned prior (model.context_frames {self.config.context_frames}) "
                                f"needs the clips' frames; train it on the videos rather than the tokens in '{source}'")
        check_label_range(dataset.num_classes, self.config.num_classes)

    def loss(self, phase: str, batch: Batch, nets: Mapping[str, nn.Module],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        if phase != "main":
            raise ValueError(f"VideoGPTBackend has a single phase 'main', got '{phase}'")
        video = batch.get("video")
        if "codes" in batch:
            codes = batch["codes"]  # (B, T', H', W') long, from a token dataset
        else:  # the VQ-VAE's exact codes, in float32 whatever the training precision (as a token dataset has them)
            with torch.autocast(video.device.type, enabled=False):
                codes = nets["vqvae"].network.encode(video.float())  # (B, T', H', W'), no gradient: frozen
        context = video[:, :, :self.config.context_frames] if self.config.context_frames else None
        with dropout_from(generator):
            loss = nets["prior"].loss(codes, batch.get("label"), context)
        return loss, {"loss": loss.item()}

    # ------------------------------------------------------------------------------------------------------
    # Sampling

    def _latent_frames(self, frames: int) -> int:
        downsample = self.networks["vqvae"].network.downsample
        check_sample_frames(frames, downsample)
        return frames // downsample[0]

    def references(self, seeds: Sequence[int], frames: int, device: torch.device,
                   options: VideoGPTSampleConfig | None = None) -> torch.Tensor | None:
        """A frame-conditioned prior continues real clips: its ground truth is clip seed of the run's data
        (when no --context video is given). An unconditional or class-conditional prior has none."""
        options = options or self.recipe.sample
        if not self.config.context_frames or options.context is not None:
            return None
        return self.dataset_clips(None, seeds, frames, device)

    def _labels(self, seeds: Sequence[int], label: int | None, device: torch.device) -> torch.Tensor | None:
        classes = self.config.num_classes
        if not classes:
            return None
        return torch.tensor([label if label is not None else seed % classes for seed in seeds], device=device)

    def sample(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], frames: int, device: torch.device,
               options: VideoGPTSampleConfig | None = None) -> torch.Tensor:
        """Videos [N, C, frames, H, W]: codes drawn token by token (video i with the generator of seeds[i] only,
        any number of latent frames), decoded by the frozen VQ-VAE. A frame-conditioned prior continues clip i
        of the run's own data (its reference); `vidgen sample --context` goes through predict() instead."""
        context = None
        if self.config.context_frames:
            context = self.references(seeds, frames, device, options)[:, :, :self.config.context_frames]
        return self._draw(nets, seeds, frames, device, options or self.recipe.sample, context)

    @property
    def predicts(self) -> bool:
        return self.config.context_frames > 0

    def context_frames(self) -> int:
        return self.config.context_frames

    def predict(self, nets: Mapping[str, nn.Module], context: torch.Tensor, seeds: Sequence[int], frames: int,
                device: torch.device, options: VideoGPTSampleConfig | None = None) -> Prediction:
        """The prior draws the codes of the whole clip given its first model.context_frames frames, as in
        training; the decoded context frames are then replaced by the given ones, so the output starts with
        them exactly."""
        n = self.config.context_frames
        if context.shape[2] != n:
            raise UserError(f"this prior conditions on exactly {n} frames (model.context_frames), not "
                            f"{context.shape[2]}; give --context-frames {n}")
        videos = self._draw(nets, seeds, frames, device, options or self.recipe.sample, context)
        return Prediction(torch.cat([context, videos[:, :, n:]], dim=2))

    def _draw(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], frames: int, device: torch.device,
              options: VideoGPTSampleConfig, context: torch.Tensor | None) -> torch.Tensor:
        latent_frames = self._latent_frames(frames)
        generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]
        codes = gpt.sample(nets["prior"], generators, frames=latent_frames,
                           label=self._labels(seeds, options.label, device), context=context,
                           temperature=options.temperature, top_k=options.top_k,
                           top_p=options.top_p)  # (N, T', H', W')
        return nets["vqvae"].network.decode_codes(codes).float().clamp(-1, 1)
