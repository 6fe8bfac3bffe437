"""The vector-quantisation codebook of VideoGPT's VQ-VAE (Yan et al. 2021, arXiv 2104.10157, §3.1), learned by
exponential moving averages (van den Oord et al. 2017, arXiv 1711.00937, appendix A.1; Razavi et al. 2019) rather
than by gradients.

Forward (pure: it changes no state):
    codes  k = argmin_j ||z - e_j||²                                 nearest code per encoder vector
    output z + sg(e_k - z)                                           straight-through estimator (VQ-VAE eq. 3)
    commitment ||z - sg(e_k)||²                                      unweighted; the caller multiplies it by β
                                                                     (0.25 in the paper)
Update (explicit, `Codebook.update`, after the optimizer step), with decay γ = 0.99 (paper §3.1):
    N_j ← γ N_j + (1 - γ) n_j                                        n_j: vectors assigned to code j
    m_j ← γ m_j + (1 - γ) Σ_{i: k_i = j} z_i
    Ñ_j = (N_j + ε) / (Σ N + K ε) · Σ N                              Laplace smoothing, ε = 1e-7 (official)
    e_j = m_j / Ñ_j
    e_j ← a random encoder vector of the batch wherever N_j < 1      dead-code restart, the official code's rule

Why the update is an explicit method and not a side effect of forward (as in the official code): the shared
training loop accumulates gradients over micro-batches, steps only parameters, and may call a loss twice (the
bf16-vs-fp32 contract check, the batch-size search). A forward that mutates buffers would update the codebook once
per micro-batch and on calls that never become a step, and leaving the model in train mode would keep moving the
codebook (the official code's issue #7). Here forward returns the batch statistics (`CodebookStats`, additive over
micro-batches) and the backend applies them once per optimizer step.

Distributed runs: every rank must hold the same codebook. `update` passes the summed counts and sums through a
`sum_over_ranks` callable (identity in one process; an all-reduce sum otherwise), and takes the restart candidates
from one rank (`is_source_rank`) through the same sum, so ranks stay identical without any other collective.

State is buffers (embeddings, N, m, an "initialised" flag), never parameters, so no optimizer touches it and it
travels in the state dict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

LAPLACE_EPS = 1e-7
"""ε of the Laplace smoothing of the EMA counts (the official code's value)."""

RESTART_NOISE = 0.01
"""When a batch has fewer encoder vectors than codes, they are repeated and jittered by this / sqrt(D) (official)."""


def identity(x: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a single process."""
    return x


@dataclass
class CodebookStats:
    """What one batch tells the EMA update. Counts and sums add over micro-batches (and over ranks); the restart
    candidates are one batch's (the first micro-batch's when accumulated)."""

    counts: torch.Tensor
    """(K,) float: number of encoder vectors assigned to each code."""
    sums: torch.Tensor
    """(K, D) float: sum of the encoder vectors assigned to each code."""
    candidates: torch.Tensor
    """(K, D) float: random encoder vectors of the batch, one per code, for restarts and the first initialisation."""

    def __add__(self, other: CodebookStats) -> CodebookStats:
        return CodebookStats(self.counts + other.counts, self.sums + other.sums, self.candidates)


@dataclass
class Quantized:
    """The output of `Codebook.forward`."""

    embeddings: torch.Tensor
    """(B, D, T, H, W): the chosen codes with the straight-through gradient to z."""
    codes: torch.Tensor
    """(B, T, H, W) long."""
    commitment: torch.Tensor
    """Scalar ||z - sg(e)||², mean over elements, not yet multiplied by β."""
    perplexity: torch.Tensor
    """Scalar exp(entropy) of the batch's code usage, a log value: K when every code is used alike, 1 at collapse."""
    codes_used: torch.Tensor
    """Scalar fraction of the K codes used at least once in this batch, a log value."""
    stats: CodebookStats
    """Detached statistics for `Codebook.update`."""


def ema_codebook(N: torch.Tensor, m: torch.Tensor, counts: torch.Tensor, sums: torch.Tensor,
                 decay: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One EMA step of the codebook statistics (VQ-VAE appendix A.1), returning the new N (K,), m (K, D) and
    embeddings (K, D) = m / Laplace-smoothed N (the official code's smoothing)."""
    N = decay * N + (1 - decay) * counts  # (K,)
    m = decay * m + (1 - decay) * sums  # (K, D)
    total = N.sum()
    smoothed = (N + LAPLACE_EPS) / (total + N.numel() * LAPLACE_EPS) * total  # (K,), sums to `total`
    return N, m, m / smoothed[:, None]


def restart_candidates(flat: torch.Tensor, n_codes: int, generator: torch.Generator | None) -> torch.Tensor:
    """n_codes random rows of the encoder vectors `flat` (M, D), as the official code draws them: if M < n_codes the
    rows are repeated ceil(n_codes / M) times and jittered by N(0, (0.01 / sqrt(D))²) so repeats differ; then a
    random permutation and the first n_codes rows."""
    M, D = flat.shape
    if M < n_codes:
        repeats = math.ceil(n_codes / M)
        flat = flat.repeat(repeats, 1)  # (M·repeats, D)
        noise = torch.randn(flat.shape, generator=generator, device=flat.device, dtype=flat.dtype)
        flat = flat + noise * (RESTART_NOISE / math.sqrt(D))
    order = torch.randperm(flat.shape[0], generator=generator, device=flat.device)
    return flat[order[:n_codes]]  # (K, D)


class Codebook(nn.Module):
    """K codes of width D, learned by EMA (see the module docstring for the maths and the update contract)."""

    def __init__(self, n_codes: int = 2048, embedding_dim: int = 256, decay: float = 0.99,
                 restart_threshold: float = 1.0) -> None:
        super().__init__()
        self.n_codes, self.embedding_dim, self.decay = n_codes, embedding_dim, decay
        self.restart_threshold = restart_threshold
        """A code whose EMA count N_j falls below this is dead and restarted (official: 1)."""
        embeddings = torch.randn(n_codes, embedding_dim)
        self.register_buffer("embeddings", embeddings)  # (K, D) e_j
        self.register_buffer("N", torch.zeros(n_codes))  # (K,) EMA of the counts
        self.register_buffer("m", embeddings.clone())  # (K, D) EMA of the sums of assigned vectors
        # A buffer, not a Python flag as in the official code, so a resumed run does not re-initialise.
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """(M, D) -> (M,) long: the nearest code to each row, from ||z||² - 2 z·e + ||e||² in float32 (a bf16
        distance would pick wrong codes among 2048 close ones)."""
        with torch.autocast(device_type=flat.device.type, enabled=False):
            flat, e = flat.float(), self.embeddings.float()
            distances = (flat**2).sum(1, keepdim=True) - 2 * flat @ e.t() + (e**2).sum(1)[None, :]  # (M, K)
            return distances.argmin(dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W) long -> (B, D, T, H, W) float: the code vectors, channels first."""
        return F.embedding(codes, self.embeddings).permute(0, 4, 1, 2, 3)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None) -> Quantized:
        """Quantise encoder outputs z (B, D, T, H, W). Changes no state; `generator` draws the restart candidates
        (None: torch's default generator)."""
        B, D, T, H, W = z.shape
        z = z.float()  # the codebook works in float32 even under autocast
        flat = z.permute(0, 2, 3, 4, 1).reshape(-1, D)  # (M, D), M = B·T·H·W
        codes = self.nearest(flat)  # (M,)
        e = self.lookup(codes.view(B, T, H, W))  # (B, D, T, H, W)

        commitment = F.mse_loss(z, e.detach())  # ||z - sg(e)||², gradient to the encoder only
        straight_through = z + (e - z).detach()  # forward value e, gradient d/dz = identity

        with torch.no_grad():
            flat = flat.detach()
            counts = torch.bincount(codes, minlength=self.n_codes).float()  # (K,)
            sums = torch.zeros(self.n_codes, D, device=z.device).index_add_(0, codes, flat)  # (K, D)
            probs = counts / counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
            codes_used = (counts > 0).float().mean()
            candidates = restart_candidates(flat, self.n_codes, generator)
        return Quantized(straight_through, codes.view(B, T, H, W), commitment, perplexity, codes_used,
                         CodebookStats(counts, sums, candidates))

    @torch.no_grad()
    def update(self, stats: CodebookStats, sum_over_ranks: Callable[[torch.Tensor], torch.Tensor] = identity,
               is_source_rank: bool = True) -> dict[str, float]:
        """Apply one step's statistics: the EMA update, then restart the dead codes. Call it once per optimizer
        step on every rank alike, with the statistics of that rank's micro-batches (summed with `+`).

        sum_over_ranks: sums a tensor over the ranks (identity in one process). Counts and sums go through it;
            so do the restart candidates, zeroed on every rank but the source, so every rank restarts with the same
            vectors (only when a code is dead or at the first call: a decision made from N, identical on all ranks).
        is_source_rank: True on exactly one rank (rank 0).

        The first call initialises the codebook from the candidates (N = 1, m = e = candidates) instead of the
        EMA step, as the official code does on its first training batch (a data-dependent init).
        Returns log values: the fraction of codes alive (N_j ≥ threshold) and the fraction restarted.
        """
        def shared_candidates() -> torch.Tensor:  # the source rank's candidates on every rank
            return sum_over_ranks(stats.candidates if is_source_rank else torch.zeros_like(stats.candidates))

        if not self.initialised:
            candidates = shared_candidates()
            # The statistics were measured against the random initial codes, so only the init is applied.
            self.embeddings.copy_(candidates)
            self.m.copy_(candidates)
            self.N.fill_(1.0)
            self.initialised.fill_(True)
            return {"codes_alive": 1.0, "codes_restarted": 0.0}

        counts, sums = sum_over_ranks(stats.counts), sum_over_ranks(stats.sums)
        N, m, embeddings = ema_codebook(self.N, self.m, counts, sums, self.decay)
        dead = N < self.restart_threshold  # (K,), identical on every rank, so all take this branch alike
        if dead.any():
            # As the official code: only the embedding is replaced; N and m keep their EMA, so a dead code is
            # re-drawn every step until enough vectors choose it for N_j to reach the threshold.
            embeddings = torch.where(dead[:, None], shared_candidates(), embeddings)
        self.N.copy_(N)
        self.m.copy_(m)
        self.embeddings.copy_(embeddings)
        restarted = dead.float().mean().item()
        return {"codes_alive": 1.0 - restarted, "codes_restarted": restarted}
