"""The stage-2 prior of VideoGPT (Yan et al. 2021, arXiv 2104.10157, §3.2): a decoder-only transformer over
the flattened code grid of a VQ-VAE, with a key/value cache for sampling.

The codes of a clip form a (T', H', W') grid, flattened in raster order (w fastest, then h, then t) into a
sequence c_0 … c_{L-1}, L = T'·H'·W'. As the official code does (`RightShift`), the network reads the sequence
shifted right by one, s = [start, c_0, …, c_{L-2}], and

    logits[i] = log p(c_i | c_<i, conditioning)     (the convention every test uses)

so the logits at position i depend on the codes at positions < i only, and changing c_j changes no logit at
positions <= j. The position embedding of grid cell i is added to s_i, so the state that predicts c_i knows
where c_i lies (the official does the same).

Pieces (paper §3.2 and the official `attention.py` where the paper is silent):
- input: a learned code embedding (the official feeds the frozen VQ-VAE codebook vectors through a linear
  layer; a learned embedding keeps the prior independent of the VQ-VAE's weights) plus
  spatio-temporal axial positions that work for any T' (`positions.py`);
- pre-norm blocks: causal self-attention (`scaled_dot_product_attention`, attention dropout), then
  cross-attention to the context frames when the prior is frame-conditioned, then a 4x MLP, each with
  residual dropout; a final LayerNorm and a linear head to n_codes logits, zero-initialised as the official's,
  so a fresh prior predicts the uniform distribution;
- class conditioning: a learned class embedding added to every input token (the official modulates every
  LayerNorm with the one-hot label instead; an input embedding is the plain, cache-friendly mechanism and the
  attention carries it to every position);
- frame conditioning: the n context frames go through a small conv encoder (the official uses a ResNet-34)
  to an (n, H/s, W/s) grid of tokens with their own axial positions, which every block attends to with
  cross-attention, as the official's `enc_attn` does. Cross-attention rather than prefix tokens: the code
  sequence and its cache keep their length, and the context keys/values are computed once per sample;
- sampling (`sample`): one token per forward pass, feeding only the new token and reusing the cached
  keys/values of the prefix; per-video random generators, temperature, top-k and top-p filtering.

Shapes: codes are long (B, T', H', W'); labels long (B,); context frames float (B, C, n, H, W) in [-1, 1];
logits (B, T', H', W', n_codes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from vidgen.models.videogpt.positions import AxialPositionEmbedding


@dataclass(frozen=True)
class PriorConfig:
    """The prior's shape; defaults are the paper's (§4, appendix: hidden 576, 4 heads, 8 layers)."""

    n_codes: int
    """Codebook size of the VQ-VAE (the paper's 2048): the vocabulary of the prior."""
    latent_shape: tuple[int, int, int]
    """(T', H', W') of the code grid the prior is trained on. H' and W' are fixed; T' may grow at sampling."""
    width: int = 576
    """Hidden width of the transformer."""
    heads: int = 4
    """Attention heads; must divide width."""
    layers: int = 8
    """Transformer blocks."""
    dropout: float = 0.2
    """Dropout on every residual branch (paper: 0.2)."""
    attn_dropout: float = 0.3
    """Dropout on the attention weights of self-attention (paper: 0.3)."""
    num_classes: int = 0
    """Classes for class conditioning; 0 for an unconditional prior."""
    context_frames: int = 0
    """Context frames the prior is conditioned on (BAIR: 1); 0 for no frame conditioning."""
    context_channels: int = 3
    """Channels of the context frames."""
    context_downsample: int = 4
    """Spatial downsampling of the context encoder, a power of 2 (the official ResNet's 4)."""
    context_width: int = 64
    """Channels of the context encoder's convolutions."""
    mlp_ratio: int = 4
    """MLP hidden width over the model width (GPT-2's 4, as the official)."""

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if len(self.latent_shape) != 3:
            raise ValueError(f"latent_shape must be (T', H', W'), got {self.latent_shape}")
        d = self.context_downsample
        if d < 1 or d & (d - 1):
            raise ValueError(f"context_downsample must be a power of 2, got {d}")


# ----------------------------------------------------------------------------------------------------------
# Sampling maths


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise ValueError on a temperature <= 0, a top_k <= 0 or a top_p outside (0, 1]."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and not top_k > 0:
        raise ValueError(f"top_k must be > 0, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Logits (..., V) -> tempered logits with the excluded codes at -inf.

    Temperature divides the logits. Top-k keeps the k most likely codes (ties at the k-th value all kept).
    Top-p (nucleus sampling, Holtzman et al. 2020) keeps the smallest set of most likely codes whose probability
    sums to at least p (after top-k); the most likely code is always kept."""
    check_sampling(temperature, top_k, top_p)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of the codes ranked above each code
        drop_sorted = mass_before >= top_p  # the set above already reaches p; the first code never drops
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw(logits: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One code per row of logits (B, V) by inverse-CDF sampling, row i with a uniform from generators[i] only,
    so a video's codes do not depend on the others in its batch."""
    u = torch.cat([torch.rand(1, generator=g, device=logits.device, dtype=torch.float64) for g in generators])
    cdf = logits.double().softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    index = (cdf <= u[:, None] * cdf[:, -1:]).sum(dim=-1)  # first code whose CDF exceeds u (never a 0-mass one)
    return index.clamp(max=logits.shape[-1] - 1)  # (B,)


# ----------------------------------------------------------------------------------------------------------
# Building blocks


@dataclass
class LayerCache:
    """Keys and values of one block for the positions decoded so far: self-attention k, v (B, heads, L, d)
    preallocated for the whole sequence; cross-attention k, v of the context, computed once."""

    k: torch.Tensor
    v: torch.Tensor
    context_k: torch.Tensor | None = None
    context_v: torch.Tensor | None = None


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, C) -> (B, heads, L, C / heads)."""
    B, L, C = x.shape
    return x.view(B, L, heads, C // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, L, d) -> (B, L, heads·d)."""
    B, heads, L, d = x.shape
    return x.transpose(1, 2).reshape(B, L, heads * d)


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention; with a cache, the n new tokens at positions start … start+n-1 write their
    keys/values into it and attend to every cached position up to their own."""

    def __init__(self, width: int, heads: int, attn_dropout: float, dropout: float) -> None:
        super().__init__()
        self.heads, self.attn_dropout = heads, attn_dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None, start: int = 0) -> torch.Tensor:
        B, n, C = x.shape
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))  # 3 x (B, heads, n, d)
        p = self.attn_dropout if self.training else 0.0
        if cache is None:
            h = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, heads, n, d)
        else:
            cache.k[:, :, start:start + n] = k
            cache.v[:, :, start:start + n] = v
            k, v = cache.k[:, :, :start + n], cache.v[:, :, :start + n]  # (B, heads, start+n, d)
            mask = None
            if n > 1:  # new query i (position start+i) sees keys 0 … start+i
                mask = torch.ones(n, start + n, dtype=torch.bool, device=x.device).tril(diagonal=start)
            h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.dropout(self.out(merge_heads(h)))  # (B, n, C)


class CrossAttention(nn.Module):
    """Multi-head attention from the code tokens to the context-frame tokens (the official `enc_attn`, no
    attention dropout there either); with a cache, the context keys/values are computed once."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Context tokens (B, M, C) -> k, v each (B, heads, M, d)."""
        k, v = self.kv(context).chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, cache: LayerCache | None = None) -> torch.Tensor:
        q = split_heads(self.q(x), self.heads)  # (B, heads, n, d)
        if cache is not None:
            k, v = cache.context_k, cache.context_v
        else:
            k, v = self.context_kv(context)  # (B, heads, M, d)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, n, d)
        return self.dropout(self.out(merge_heads(h)))  # (B, n, C)


class Block(nn.Module):
    """Pre-norm transformer block (GPT-2; the official `AttentionBlock`): x += attn(LN x); x += cross(LN x) when
    frame-conditioned; x += mlp(LN x)."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        w = config.width
        self.norm_attn = nn.LayerNorm(w)
        self.attn = CausalSelfAttention(w, config.heads, config.attn_dropout, config.dropout)
        self.norm_cross = nn.LayerNorm(w) if config.context_frames else None
        self.cross = CrossAttention(w, config.heads, config.dropout) if config.context_frames else None
        self.norm_mlp = nn.LayerNorm(w)
        self.mlp = nn.Sequential(nn.Linear(w, config.mlp_ratio * w), nn.GELU(), nn.Linear(config.mlp_ratio * w, w),
                                 nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, cache: LayerCache | None = None,
                start: int = 0) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x), cache, start)
        if self.cross is not None:
            x = x + self.cross(self.norm_cross(x), context, cache)
        return x + self.mlp(self.norm_mlp(x))  # (B, n, C)


class ContextEncoder(nn.Module):
    """Context frames (B, C, n, H, W) -> tokens (B, n·H/s·W/s, width): a per-frame conv stem, log2(s) stride-2
    convs, one residual 3x3x3 conv that mixes the context frames, a 1x1x1 projection to the model width, axial
    positions over (n, H/s, W/s) and a LayerNorm. A small stand-in for the official ResNet-34 (stride (1, 4, 4),
    240 channels)."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        ch = config.context_width
        groups = math.gcd(ch, 8)
        layers: list[nn.Module] = [nn.Conv3d(config.context_channels, ch, (1, 3, 3), padding=(0, 1, 1))]
        for _ in range(int(math.log2(config.context_downsample))):
            layers += [nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv3d(ch, ch, (1, 4, 4), (1, 2, 2), (0, 1, 1))]
        self.down = nn.Sequential(*layers)
        self.mix = nn.Sequential(nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv3d(ch, ch, 3, padding=1))
        self.proj = nn.Sequential(nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv3d(ch, config.width, 1))
        self.positions = AxialPositionEmbedding(config.width)
        self.norm = nn.LayerNorm(config.width)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h = self.down(frames)  # (B, ch, n, H/s, W/s)
        h = self.proj(h + self.mix(h))  # (B, width, n, H/s, W/s)
        grid = tuple(h.shape[2:])
        tokens = h.flatten(2).transpose(1, 2)  # (B, n·H/s·W/s, width), raster order
        return self.norm(tokens + self.positions(grid))


# ----------------------------------------------------------------------------------------------------------
# The prior


class VideoGPTPrior(nn.Module):
    """p(codes | label, context frames) as a causal transformer over the flattened code grid (module docstring
    for the conventions). `forward` is teacher-forced over a whole grid; `start_cache` and `step` decode
    incrementally."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.code_embedding = nn.Embedding(config.n_codes, w)
        self.start = nn.Parameter(torch.zeros(w))  # the official RightShift's start-of-sequence vector
        self.class_embedding = nn.Embedding(config.num_classes, w) if config.num_classes else None
        self.positions = AxialPositionEmbedding(w)
        self.context_encoder = ContextEncoder(config) if config.context_frames else None
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, config.n_codes, bias=False)
        self._init_weights()
        self.grad_checkpointing = False
        """Recompute each block's activations in the backward pass instead of storing them (as the official prior
        does in training: less activation memory for about one more forward pass); set from
        train.grad_checkpointing."""

    def _init_weights(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) for linear layers and embeddings, the residual output projections
        scaled by 1/sqrt(2·layers); the head zeroed as the official's `fc_out`, so training starts at uniform
        logits (loss log n_codes). Positions keep their own initialisation (`AxialPositionEmbedding`)."""
        for name, module in self.named_modules():
            if "positions" in name.split(".") or isinstance(module, nn.Conv3d):
                continue
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.start, std=0.02)
        for block in self.blocks:
            residual_outputs = [block.attn.out, block.mlp[2]] + ([block.cross.out] if block.cross else [])
            for layer in residual_outputs:
                nn.init.normal_(layer.weight, std=0.02 / math.sqrt(2 * self.config.layers))
        nn.init.zeros_(self.head.weight)

    # Conditioning --------------------------------------------------------------------------------------

    def _check_conditioning(self, batch: int, label: torch.Tensor | None, context: torch.Tensor | None) -> None:
        c = self.config
        if (label is not None) != bool(c.num_classes):
            raise ValueError(f"the prior was built with num_classes={c.num_classes}; label "
                             f"{'missing' if label is None else 'given'}")
        if (context is not None) != bool(c.context_frames):
            raise ValueError(f"the prior was built with context_frames={c.context_frames}; context "
                             f"{'missing' if context is None else 'given'}")
        if label is not None and label.shape != (batch,):
            raise ValueError(f"label must have shape ({batch},), got {tuple(label.shape)}")
        if context is not None and (context.shape[0] != batch or context.shape[2] != c.context_frames):
            raise ValueError(f"context must be (B={batch}, C, {c.context_frames}, H, W), got {tuple(context.shape)}")

    def _embed(self, inputs: torch.Tensor, start: int, grid: tuple[int, int, int],
               label: torch.Tensor | None) -> torch.Tensor:
        """Input tokens s_start … s_start+n-1, with -1 meaning the start vector: (B, n) -> (B, n, width)."""
        h = self.code_embedding(inputs.clamp(min=0))  # (B, n, width)
        h = torch.where((inputs < 0)[..., None], self.start.to(h.dtype), h)
        h = h + self.positions(grid)[start:start + inputs.shape[1]]  # position of the grid cell each input predicts
        if self.class_embedding is not None:
            h = h + self.class_embedding(label)[:, None, :]  # (B, 1, width): the same at every position
        return self.input_dropout(h)

    def _check_grid(self, grid: tuple[int, ...]) -> None:
        if tuple(grid[1:]) != tuple(self.config.latent_shape[1:]):
            raise ValueError(f"code grid {tuple(grid)} has H', W' = {tuple(grid[1:])}; the prior was built for "
                             f"{tuple(self.config.latent_shape[1:])} (only T' may change)")

    # Teacher forcing -----------------------------------------------------------------------------------

    def forward(self, codes: torch.Tensor, label: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, T', H', W') -> logits (B, T', H', W', n_codes), logits[..., i] = log p(c_i | c_<i)."""
        B, *grid = codes.shape
        self._check_grid(grid)
        self._check_conditioning(B, label, context)
        flat = codes.flatten(1)  # (B, L)
        inputs = torch.cat([torch.full_like(flat[:, :1], -1), flat[:, :-1]], dim=1)  # shift right: [start, c_0, …]
        h = self._embed(inputs, 0, tuple(grid), label)  # (B, L, width)
        ctx = self.context_encoder(context) if self.context_encoder is not None else None  # (B, M, width)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():  # dropout masks are redrawn alike (RNG kept)
                h = torch.utils.checkpoint.checkpoint(block, h, ctx, use_reentrant=False)
            else:
                h = block(h, ctx)
        logits = self.head(self.norm(h))  # (B, L, n_codes)
        return logits.view(B, *grid, -1)

    def loss(self, codes: torch.Tensor, label: torch.Tensor | None = None,
             context: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy in nats per code (the paper's NLL objective, §3.2)."""
        logits = self(codes, label, context)
        return F.cross_entropy(logits.flatten(0, -2).float(), codes.flatten())

    # Incremental decoding ------------------------------------------------------------------------------

    def start_cache(self, batch: int, frames: int, context: torch.Tensor | None = None) -> list[LayerCache]:
        """Empty key/value caches for `frames` latent frames, with the context keys/values filled in."""
        c = self.config
        L = frames * c.latent_shape[1] * c.latent_shape[2]
        p = self.head.weight
        shape = (batch, c.heads, L, c.width // c.heads)
        ctx = self.context_encoder(context) if self.context_encoder is not None else None
        caches = []
        for block in self.blocks:
            cache = LayerCache(torch.zeros(shape, device=p.device, dtype=p.dtype),
                               torch.zeros(shape, device=p.device, dtype=p.dtype))
            if block.cross is not None:
                cache.context_k, cache.context_v = block.cross.context_kv(ctx)
            caches.append(cache)
        return caches

    def step(self, inputs: torch.Tensor, start: int, caches: list[LayerCache], frames: int,
             label: torch.Tensor | None = None) -> torch.Tensor:
        """Feed input tokens s_start … s_start+n-1 ((B, n), -1 = start vector), attending to the cached prefix:
        -> logits (B, n, n_codes) for codes c_start … c_start+n-1."""
        c = self.config
        h = self._embed(inputs, start, (frames, *c.latent_shape[1:]), label)  # (B, n, width)
        for block, cache in zip(self.blocks, caches):
            h = block(h, None, cache, start)
        return self.head(self.norm(h))  # (B, n, n_codes)


# ----------------------------------------------------------------------------------------------------------
# The sampler


@torch.no_grad()
def sample(prior: VideoGPTPrior, generators: list[torch.Generator], frames: int | None = None,
           label: torch.Tensor | None = None, context: torch.Tensor | None = None, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, use_cache: bool = True) -> torch.Tensor:
    """Ancestral sampling of a code grid (B, frames, H', W'), B = len(generators), video i drawn with
    generators[i] only. `frames` (T') defaults to the trained T' and may exceed it.

    With `use_cache` every step feeds only the newest token and reuses the cached keys/values of the prefix
    (L forward passes of one token); without it every step recomputes the whole sequence with `forward` (the
    reference the cache is tested against)."""
    check_sampling(temperature, top_k, top_p)
    c = prior.config
    frames = c.latent_shape[0] if frames is None else frames
    B, L = len(generators), frames * c.latent_shape[1] * c.latent_shape[2]
    device = prior.head.weight.device
    prior._check_conditioning(B, label, context)
    was_training = prior.training
    prior.eval()

    codes = torch.full((B, L), -1, dtype=torch.long, device=device)  # -1: not sampled yet
    caches = prior.start_cache(B, frames, context) if use_cache else None
    for i in range(L):
        # 1. Logits for code i given codes < i.
        if use_cache:
            new_input = codes[:, i - 1:i] if i > 0 else torch.full((B, 1), -1, dtype=torch.long, device=device)
            logits = prior.step(new_input, i, caches, frames, label)[:, -1]  # (B, n_codes)
        else:  # teacher-forced pass over the grid; codes >= i are placeholders that causality hides
            grid = codes.clamp(min=0).view(B, frames, *c.latent_shape[1:])
            logits = prior(grid, label, context).flatten(1, -2)[:, i]
        # 2. Temperature, top-k, top-p; 3. one draw per video from its own generator.
        codes[:, i] = draw(filter_logits(logits, temperature, top_k, top_p), generators)

    prior.train(was_training)
    return codes.view(B, frames, *c.latent_shape[1:])
