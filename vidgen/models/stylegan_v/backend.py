"""The StyleGAN-V backend: networks, phases, optimizers, losses and the sampler for the shared loop.

One training step runs the phases G_main, [G_reg,] D_main, D_reg (lazily, every r1_every steps) — StyleGAN2-ADA's
phase split. Real clips come from the data pipeline as k sparse frames with their times; fake clips get the same
kind of time pattern (by default the gaps of the batch's real clips) at fractional times (StyleGAN-V Sec. 3.3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vidgen.core.clips import SparseClips
from vidgen.core.config import Recipe
from vidgen.models import gan
from vidgen.models.base import Backend, Batch, Phase, TrainingJob
from vidgen.models.stylegan_v.augment import AdaptiveAugment, augment_clips
from vidgen.models.stylegan_v.config import StyleGANVConfig, StyleGANVSampleConfig
from vidgen.models.stylegan_v.discriminator import Discriminator
from vidgen.models.stylegan_v.generator import Generator, time_dtype

PL_DECAY = 0.01
"""Path-length regularisation: decay of the running mean path length (StyleGAN2)."""
PL_BATCH_SHRINK = 2
"""Path-length regularisation runs on half the batch (StyleGAN2)."""


def fake_clip_horizons(batch: Mapping[str, torch.Tensor], cfg: StyleGANVConfig) -> torch.Tensor:
    """How far in time each fake clip of a step may reach, [B] float: min(length of the real clip's source video,
    max_num_frames) — the reference's min(training_set.get_video_len(i), max_num_frames) (training_loop.py) —
    or max_num_frames for a batch without "video_frames"."""
    times = batch["times"]  # [B, k]
    if "video_frames" not in batch:
        return torch.full((times.shape[0],), float(cfg.max_num_frames), device=times.device)
    return batch["video_frames"].to(times.device).clamp(max=cfg.max_num_frames).float()


def sample_clip_times(batch: int, cfg: StyleGANVConfig, generator: torch.Generator | None = None,
                      device: torch.device | None = None, horizons: torch.Tensor | None = None) -> torch.Tensor:
    """Times of fake training clips, [B, k] float, sorted — the reference's `random_frame_sampling` for a video of
    L = horizons[i] frames (default: max_num_frames):

    1. first-to-last distance d uniform over cfg.clip_distances (powers of two in [k - 1, max_frame_distance]);
       the reference keeps those with d <= L - 1, which is all of them here: the dataset skips videos shorter
       than max_frame_distance + 1 frames;
    2. offset uniform in [0, L - d - 1), fractional (G must work between integer frames);
    3. the k - 2 middle frames at distinct integer offsets in [1, d - 1] from the first.
    """
    k = cfg.num_frames_per_clip
    distances = torch.tensor(cfg.clip_distances, dtype=torch.float32, device=device)
    d = distances[torch.randint(len(distances), (batch,), generator=generator, device=device)]  # [B]
    horizons = torch.full((batch,), float(cfg.max_num_frames), device=device) if horizons is None else horizons
    offset = torch.rand(batch, generator=generator, device=device) * (horizons - d - 1).clamp(min=0)  # [B]
    longest = int(max(cfg.clip_distances))
    # k - 2 distinct values from {1, ..., d - 1}: the smallest random scores among the allowed positions.
    scores = torch.rand(batch, max(longest - 1, 1), generator=generator, device=device)  # [B, d_max - 1]
    allowed = torch.arange(1, scores.shape[1] + 1, device=device)[None, :] < d[:, None]
    scores = scores.masked_fill(~allowed, float("inf"))
    middle = scores.topk(k - 2, dim=1, largest=False).indices.float() + 1  # [B, k - 2]
    relative = torch.cat([torch.zeros(batch, 1, device=device), middle, d[:, None]], dim=1).sort(dim=1).values
    return offset[:, None] + relative  # [B, k]


def clip_times_like(real_times: torch.Tensor, cfg: StyleGANVConfig, generator: torch.Generator | None = None,
                    horizons: torch.Tensor | None = None) -> torch.Tensor:
    """Fake clip times with the gaps of the real clips [B, k] (in a random order over the batch), each at a
    fractional start uniform in [0, L - span - 1), L the horizon [B] of the real clip it copies (its source
    video's length capped at max_num_frames; default max_num_frames)."""
    batch = real_times.shape[0]
    relative = (real_times - real_times[:, :1]).float()  # [B, k], starts at 0
    order = torch.randperm(batch, generator=generator, device=real_times.device)
    relative = relative[order]
    horizons = float(cfg.max_num_frames) if horizons is None else horizons[order]  # [B] or a scalar
    span = relative[:, -1]
    room = (horizons - span - 1).clamp(min=0)
    offset = torch.rand(batch, generator=generator, device=real_times.device) * room  # [B]
    return offset[:, None] + relative


def frame_times(frames: int, fps: float, train_fps: float, time_offset: float = 0.0) -> torch.Tensor:
    """Times (in training frames) of `frames` output frames at `fps`: time_offset + arange(frames) * train_fps / fps.
    A higher fps samples the same continuous motion more densely (slow motion at the training rate)."""
    return time_offset + torch.arange(frames, dtype=torch.float64) * (train_fps / fps)


class StyleGANVBackend(Backend):
    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        cfg: StyleGANVConfig = recipe.model
        self.cfg = cfg
        resolution = recipe.data.resolution
        # Initialise from the run seed without touching the global random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.run.seed)
            self.networks = nn.ModuleDict({"G": Generator(cfg, resolution), "D": Discriminator(cfg, resolution)})
        self.ema_networks = ("G",)
        # One process's batch until the shared loop tells the global one (bind_loop).
        self.r1_gamma = cfg.resolved_r1_gamma(resolution, recipe.train.batch_size * recipe.train.grad_accum)
        self.augment_p = cfg.augment_p if cfg.augment != "none" else 0.0
        self.ada = (AdaptiveAugment(cfg.augment_p, cfg.ada_target, cfg.ada_interval, cfg.ada_speed_videos)
                    if cfg.augment == "ada" else None)
        self._sum_over_ranks: Callable[[list[float]], list[float]] | None = None
        self._ada_step = [0.0, 0.0]  # this step's sum of sign(D(real)) and count on this process, under the loop
        self.pl_mean = 0.0

    # --- The shared loop's hooks (vidgen/train.py) ---

    def bind_loop(self, job: TrainingJob) -> None:
        """The automatic R1 gamma divides by the global batch, as stylegan2-ada's does, so a recipe trains alike
        on any number of GPUs; ADA sums its statistics over the ranks. From then on a D step for ADA is a whole
        training step (end_step), not one loss() call."""
        self.r1_gamma = self.cfg.resolved_r1_gamma(self.recipe.data.resolution, job.global_batch)
        self._sum_over_ranks = job.sum_over_ranks

    def end_step(self, applied: bool) -> None:
        """Called by the shared loop on every rank after each training step. `applied` is False when the step was
        skipped (a non-finite loss): its ADA statistics are dropped."""
        pending, self._ada_step = self._ada_step, [0.0, 0.0]
        if self.ada is None or not applied or self._sum_over_ranks is None:
            return
        sign_sum, videos = self._sum_over_ranks(pending)  # every rank: the same sums, the same p
        if videos:
            self.ada.update(sign_sum, int(videos))
            self.augment_p = self.ada.p

    def training_clips(self) -> SparseClips:
        """Real clips: k frames at irregular integer times, first-to-last distance from model.clip_distances."""
        return SparseClips(self.cfg.num_frames_per_clip, self.cfg.clip_distances)

    # --- Phases and optimizers ---

    def phases(self) -> Sequence[Phase]:
        phases = [Phase("G_main", "G")]
        if self.cfg.pl_weight > 0:
            phases.append(Phase("G_reg", "G", every=self.cfg.pl_every))
        phases.append(Phase("D_main", "D"))
        if self.r1_gamma > 0:
            phases.append(Phase("D_reg", "D", every=self.cfg.r1_every))
        return phases

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        train = self.recipe.train

        def adam(module: nn.Module, every: int) -> torch.optim.Optimizer:
            # Lazy regularisation (StyleGAN2 Sec. 3.1): a regularisation step every `every` steps adds 1/every
            # of a step on average; c = every / (every + 1) keeps Adam's effective lr and momenta unchanged.
            c = every / (every + 1)
            return torch.optim.Adam(module.parameters(), lr=train.lr * c,
                                    betas=(train.betas[0] ** c, train.betas[1] ** c), eps=1e-8,
                                    weight_decay=train.weight_decay)

        return {"G": adam(self.networks["G"], self.cfg.pl_every), "D": adam(self.networks["D"], self.cfg.r1_every)}

    # --- Losses ---

    def loss(self, phase: str, batch: Batch, nets: Mapping[str, nn.Module],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        G, D = nets["G"], nets["D"]
        # Only the networks this phase optimises collect parameter gradients (gradients still flow through D
        # to G's output in G_main).
        G.requires_grad_(phase.startswith("G"))
        D.requires_grad_(phase.startswith("D"))
        real, real_times = batch["video"], batch["times"]  # [B, C, k, H, W], [B, k]
        horizons = fake_clip_horizons(batch, self.cfg)  # [B]: fake clips stay within the real videos' lengths

        if phase == "G_main":  # non-saturating loss: -log sigmoid(D(G(z)))
            fake, fake_times = self._generate(G, real_times, horizons, generator)
            logits = D(self._augment(fake, generator), fake_times)
            loss = gan.generator_loss(logits)
            return loss, {"G/loss": loss.item(), "G/fake_logit": logits.mean().item()}

        if phase == "G_reg":
            return self._path_length_loss(G, real_times, horizons, generator)

        if phase == "D_main":  # -log(1 - sigmoid(D(fake))) - log sigmoid(D(real))
            with torch.no_grad():
                fake, fake_times = self._generate(G, real_times, horizons, generator)
            fake_logits = D(self._augment(fake, generator), fake_times)
            real_logits = D(self._augment(real, generator), real_times)
            loss = gan.discriminator_loss(real_logits, fake_logits)
            if self.ada is not None:
                self._record_ada(real_logits)
            accuracy = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())
            return loss, {"loss": loss.item(), "D/loss": loss.item(), "D/real_logit": real_logits.mean().item(),
                          "D/fake_logit": fake_logits.mean().item(), "D/accuracy": accuracy.item(),
                          "augment_p": self.augment_p}

        if phase == "D_reg":  # lazy R1 (Mescheder et al. 2018) on real clips, through the augmentation
            real = real.detach().requires_grad_(True)
            logits = D(self._augment(real, generator), real_times)
            (per_frame,) = gan.per_frame_gradient_norms(logits, [real])  # [B, k]
            penalty = per_frame.mean(dim=1)  # per frame, averaged per video: [B]
            loss = penalty.mean() * (self.r1_gamma / 2) * self.cfg.r1_every
            return loss, {"D/r1_penalty": penalty.mean().item()}

        raise ValueError(f"unknown phase '{phase}'")

    def _record_ada(self, real_logits: torch.Tensor) -> None:
        if self._sum_over_ranks is None:  # used on its own (tests, notebooks): each D_main call is a D step
            self.ada.accumulate(real_logits)
            self.augment_p = self.ada.p
            return
        self._ada_step[0] += float(real_logits.detach().sign().sum())
        self._ada_step[1] += real_logits.numel()

    def _fake_times(self, real_times: torch.Tensor, horizons: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
        if self.cfg.fake_clip_times == "like_real":
            return clip_times_like(real_times, self.cfg, generator, horizons)
        # The reference draws each fake clip's horizon from a random video of the dataset; the batch's videos are
        # such a draw (the sampler visits the videos in a random order).
        return sample_clip_times(real_times.shape[0], self.cfg, generator, real_times.device, horizons)

    def _generate(self, G: nn.Module, real_times: torch.Tensor, horizons: torch.Tensor,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Fake clips [B, C, k, H, W] at fractional times [B, k] within horizons [B] (see model.fake_clip_times)."""
        z = torch.randn(real_times.shape[0], self.cfg.z_dim, generator=generator, device=real_times.device)
        times = self._fake_times(real_times, horizons, generator)
        return G(z, times, generator=generator), times

    def _augment(self, video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return augment_clips(video, self.augment_p, generator) if self.augment_p > 0 else video

    def _path_length_loss(self, G: nn.Module, real_times: torch.Tensor, horizons: torch.Tensor,
                          generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """StyleGAN2 path-length regularisation, E (|J_w^T y| - a)^2 with y ~ N(0, I) / sqrt(H W) per frame."""
        batch = max(real_times.shape[0] // PL_BATCH_SHRINK, 1)
        device = real_times.device
        z = torch.randn(batch, self.cfg.z_dim, generator=generator, device=device)
        times = self._fake_times(real_times[:batch], horizons[:batch], generator)
        ws = G.mapping(z).unsqueeze(1).repeat(1, G.num_ws, 1)  # [B, num_ws, w_dim]
        motion_z = G.draw_motion_z(batch, float(times.max()), generator, device)
        video = G.render(ws, G.motion_codes(times, motion_z), times.shape[1])  # [B, C, k, H, W]
        noise = torch.randn(video.shape, generator=generator, device=device)
        noise = noise / math.sqrt(video.shape[3] * video.shape[4])  # per-frame image-size normalisation
        (grads,) = torch.autograd.grad((video * noise).sum(), ws, create_graph=True)  # [B, num_ws, w_dim]
        lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()  # [B]
        mean_length = lengths.mean().item()
        if math.isfinite(mean_length):  # a step skipped for a non-finite loss must not poison the running mean
            self.pl_mean += PL_DECAY * (mean_length - self.pl_mean)
        penalty = (lengths - self.pl_mean).square().mean()
        return penalty * self.cfg.pl_weight * self.cfg.pl_every, {"G/pl_penalty": penalty.item()}

    # --- Sampling ---

    @torch.no_grad()
    def sample(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], frames: int, device: torch.device,
               options: StyleGANVSampleConfig | None = None) -> torch.Tensor:
        """Videos [len(seeds), C, frames, H, W] in [-1, 1], one random generator per seed.

        Frame i shows time options.time_offset + i * data.fps / fps (in training frames), so the output fps
        changes the time step, not the speed of motion. Only the motion noise codes of the knots around the
        requested times are drawn (code j of a seed depends on (seed, j) alone), so memory does not grow with the
        time offset; frames are rendered in chunks of model.render_chunk. Truncation psi < 1 trades variety for
        quality (w -> w_avg + psi (w - w_avg)).
        """
        options = options or self.recipe.sample
        G = nets["G"]
        device = torch.device(device)
        fps = self.recipe.output_fps(options)
        # float64 (time_dtype): at offsets beyond 2^24 frames float32 would merge neighbouring frames (see
        # generator.py's AcyclicPositionalEncoding); the motion encoder splits them into knot and time since it.
        times = frame_times(frames, fps, self.recipe.data.fps, options.time_offset)
        times = times.to(time_dtype(device)).to(device)  # [T]
        first_code, num_codes = G.motion_window(times)

        # --- Per-seed noise: content z from the seed's generator, motion noise codes of the window only ---
        zs, motion_zs = [], []
        for seed in seeds:
            gen = torch.Generator(device).manual_seed(int(seed))
            zs.append(torch.randn(1, G.z_dim, generator=gen, device=device))
            motion_zs.append(G.draw_motion_z_for_seed(int(seed), first_code, num_codes, device))
        z = torch.cat(zs)  # [N, z_dim]
        motion_z = torch.stack(motion_zs)  # [N, L, z_m]

        # --- Content and motion codes for the whole video (small), then frames in chunks ---
        w = G.mapping(z, truncation=options.truncation, update_w_avg=False)  # [N, w_dim]
        motion_v = G.motion_codes(times.expand(len(seeds), -1), motion_z, first_code)  # [N, T, v] or None
        out = torch.empty(len(seeds), G.img_channels, frames, G.resolution, G.resolution, device=device)
        chunk = max(1, self.cfg.render_chunk // max(len(seeds), 1))
        for start in range(0, frames, chunk):
            stop = min(start + chunk, frames)
            v = None if motion_v is None else motion_v[:, start:stop]
            out[:, :, start:stop] = G.render(w, v, stop - start)
        return out.clamp_(-1.0, 1.0)  # G's output is unbounded; videos are [-1, 1] (the reference clips on saving)

    # --- Non-network state ---

    def extra_state(self) -> dict[str, Any]:
        return {"augment_p": self.augment_p, "pl_mean": self.pl_mean}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.augment_p = float(state.get("augment_p", self.augment_p))
        if self.ada is not None:
            self.ada.p = self.augment_p
        self.pl_mean = float(state.get("pl_mean", self.pl_mean))
