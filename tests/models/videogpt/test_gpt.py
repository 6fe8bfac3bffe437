"""The VideoGPT prior (vidgen/models/videogpt/gpt.py) at tiny widths on a CPU: causality, the key/value cache
against full recomputation, per-video seeds, conditioning, longer grids than trained, filtering, training."""

from __future__ import annotations

import math

import pytest
import torch

from vidgen.models.videogpt.gpt import PriorConfig, VideoGPTPrior, draw, filter_logits, sample
from vidgen.models.videogpt.positions import AxialPositionEmbedding, sinusoidal_features

GRID = (2, 3, 3)  # (T', H', W'): 18 tokens
N_CODES = 11


def tiny(**overrides) -> PriorConfig:
    fields = dict(n_codes=N_CODES, latent_shape=GRID, width=16, heads=2, layers=2, dropout=0.0, attn_dropout=0.0,
                  context_width=8, context_downsample=2)
    return PriorConfig(**{**fields, **overrides})


def build(config: PriorConfig, seed: int = 0, dtype: torch.dtype = torch.float64) -> VideoGPTPrior:
    """A prior with every parameter random (the zero-initialised head would make every logit 0)."""
    torch.manual_seed(seed)
    prior = VideoGPTPrior(config).to(dtype).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in prior.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=dtype))
    return prior


def codes(batch: int, grid=GRID, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, N_CODES, (batch, *grid), generator=torch.Generator().manual_seed(seed))


def generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.fixture(autouse=True)
def single_threaded(one_thread) -> None:
    """Every test here runs tiny networks (tests/conftest.py: one_thread)."""


# ----------------------------------------------------------------------------------------------------------
# Conventions and causality


def test_fresh_prior_predicts_uniform():
    prior = VideoGPTPrior(tiny())
    loss = prior.loss(codes(2))
    assert loss.item() == pytest.approx(math.log(N_CODES), abs=1e-6)


@pytest.mark.parametrize("j", [0, 5, 17])
def test_logits_at_i_depend_only_on_codes_before_i(j):
    # Convention: logits[i] = log p(c_i | c_<i); changing c_j changes the logits at positions > j only.
    prior = build(tiny())
    c = codes(1)
    changed = c.clone().flatten()
    changed[j] = (changed[j] + 1) % N_CODES
    a = prior(c).flatten(1, -2)[0]  # (L, n_codes)
    b = prior(changed.view_as(c)).flatten(1, -2)[0]
    assert torch.equal(a[:j + 1], b[:j + 1])
    if j + 1 < a.shape[0]:
        assert not torch.allclose(a[j + 1:], b[j + 1:])


def test_first_logits_ignore_every_code():
    # Position 0 sees only the start vector (and its position): any grid gives the same first logits.
    prior = build(tiny())
    a, b = prior(codes(1, seed=1)), prior(codes(1, seed=2))
    assert torch.equal(a[0, 0, 0, 0], b[0, 0, 0, 0])


# ----------------------------------------------------------------------------------------------------------
# The key/value cache


@pytest.mark.parametrize("conditioning", ["none", "class", "frames"])
def test_cached_sampling_equals_recomputing_the_prefix(conditioning):
    config = tiny(**{"none": {}, "class": {"num_classes": 3}, "frames": {"context_frames": 2}}[conditioning])
    prior = build(config)
    label = torch.tensor([0, 2]) if config.num_classes else None
    context = torch.rand(2, 3, 2, 6, 6, dtype=torch.float64) * 2 - 1 if config.context_frames else None
    cached = sample(prior, generators([7, 8]), label=label, context=context, top_k=8, top_p=0.95)
    full = sample(prior, generators([7, 8]), label=label, context=context, top_k=8, top_p=0.95, use_cache=False)
    assert torch.equal(cached, full)
    assert len(cached.unique()) > 1  # the test saw more than one code

    # The logits of the cached steps equal those of one teacher-forced pass over the sampled grid.
    with torch.no_grad():
        reference = prior(cached, label, context).flatten(1, -2)  # (B, L, n_codes)
        caches = prior.start_cache(2, GRID[0], context)
        flat = cached.flatten(1)
        inputs = torch.cat([torch.full((2, 1), -1), flat[:, :-1]], dim=1)
        stepped = torch.cat([prior.step(inputs[:, i:i + 1], i, caches, GRID[0], label) for i in range(flat.shape[1])],
                            dim=1)
    torch.testing.assert_close(stepped, reference, rtol=1e-10, atol=1e-10)


def test_prefilled_cache_equals_one_token_steps():
    # Feeding a prefix of several tokens at once (masked within the chunk) and then single tokens gives the
    # logits of the teacher-forced pass.
    prior = build(tiny())
    c = codes(2)
    flat = c.flatten(1)
    inputs = torch.cat([torch.full((2, 1), -1), flat[:, :-1]], dim=1)
    with torch.no_grad():
        reference = prior(c).flatten(1, -2)
        caches = prior.start_cache(2, GRID[0])
        parts = [prior.step(inputs[:, :7], 0, caches, GRID[0])]
        parts += [prior.step(inputs[:, i:i + 1], i, caches, GRID[0]) for i in range(7, flat.shape[1])]
    torch.testing.assert_close(torch.cat(parts, dim=1), reference, rtol=1e-10, atol=1e-10)


def test_float32_cache_is_close_to_recomputation():
    prior = build(tiny(), dtype=torch.float32)
    cached = sample(prior, generators([1, 2, 3]))
    full = sample(prior, generators([1, 2, 3]), use_cache=False)
    assert (cached == full).float().mean() > 0.9  # float32 rounding may flip a rare draw at a CDF boundary


def test_video_depends_only_on_its_own_seed():
    prior = build(tiny())
    batch = sample(prior, generators([3, 4, 5]))
    alone = sample(prior, generators([4]))
    assert torch.equal(batch[1], alone[0])
    assert not torch.equal(batch[0], batch[1])


def test_sampling_restores_training_mode():
    prior = build(tiny()).train()
    sample(prior, generators([0]))
    assert prior.training


# ----------------------------------------------------------------------------------------------------------
# Conditioning


def test_class_changes_the_logits():
    prior = build(tiny(num_classes=3))
    c = codes(1).expand(2, -1, -1, -1)
    logits = prior(c, label=torch.tensor([0, 1]))
    assert not torch.allclose(logits[0], logits[1])


def test_context_frames_change_the_logits():
    prior = build(tiny(context_frames=1))
    c = codes(1).expand(2, -1, -1, -1)
    context = torch.rand(2, 3, 1, 8, 8, dtype=torch.float64) * 2 - 1
    logits = prior(c, context=context)
    assert not torch.allclose(logits[0], logits[1])
    # Every position attends to the context, the first one included.
    assert not torch.allclose(logits[0, 0, 0, 0], logits[1, 0, 0, 0])


def test_missing_or_unexpected_conditioning_is_a_clear_error():
    with pytest.raises(ValueError, match="num_classes=3; label missing"):
        build(tiny(num_classes=3))(codes(1))
    with pytest.raises(ValueError, match="context_frames=0; context given"):
        build(tiny())(codes(1), context=torch.zeros(1, 3, 1, 8, 8, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------------------
# Positions for longer grids


def test_longer_grid_than_trained():
    prior = build(tiny())
    T, H, W = GRID
    short = prior.positions(GRID)
    long = prior.positions((2 * T, H, W))
    assert long.shape == (2 * T * H * W, 16)
    # Equal up to float64 rounding (a matmul over more rows may block its sums differently).
    torch.testing.assert_close(long[:T * H * W], short, rtol=0, atol=1e-12)
    # The prior runs on the longer grid and samples it; the first T' frames' logits do not see the rest.
    c = codes(1, grid=(2 * T, H, W))
    logits = prior(c)
    assert logits.shape == (1, 2 * T, H, W, N_CODES)
    torch.testing.assert_close(logits[:, :T], prior(c[:, :T]), rtol=1e-12, atol=1e-12)
    assert sample(prior, generators([0]), frames=2 * T).shape == (1, 2 * T, H, W)


def test_other_spatial_grid_is_a_clear_error():
    with pytest.raises(ValueError, match="only T' may change"):
        build(tiny())(codes(1, grid=(2, 4, 3)))


def test_axial_embedding_is_a_sum_over_axes():
    emb = AxialPositionEmbedding(8).double()
    table = emb((2, 3, 4)).view(2, 3, 4, 8)
    per_axis = [proj(sinusoidal_features(torch.arange(n), 8)) for n, proj in zip((2, 3, 4), emb.axes)]
    expected = per_axis[0][:, None, None] + per_axis[1][None, :, None] + per_axis[2][None, None, :]
    torch.testing.assert_close(table, expected)


def test_sinusoids_closed_form():
    s = sinusoidal_features(torch.tensor([0, 3]), 4, max_period=100.0)
    # ω = (1, 100^-1/2): [sin 3, sin 0.3, cos 3, cos 0.3] at p = 3; [0, 0, 1, 1] at p = 0.
    torch.testing.assert_close(s, torch.tensor([[0, 0, 1, 1], [math.sin(3), math.sin(0.3), math.cos(3), math.cos(0.3)]],
                                               dtype=torch.float64))


# ----------------------------------------------------------------------------------------------------------
# Filtering and drawing


DIST = torch.tensor([0.5, 0.05, 0.3, 0.15]).log()  # ranked: 0 (0.5), 2 (0.3), 3 (0.15), 1 (0.05)


def kept(logits: torch.Tensor) -> list[int]:
    return torch.isfinite(logits).nonzero().flatten().tolist()


def test_top_k():
    assert kept(filter_logits(DIST, top_k=1)) == [0]
    assert kept(filter_logits(DIST, top_k=2)) == [0, 2]
    assert kept(filter_logits(DIST, top_k=10)) == [0, 1, 2, 3]


@pytest.mark.parametrize("p, expected", [(0.4, [0]), (0.5, [0]), (0.6, [0, 2]), (0.8, [0, 2]), (0.81, [0, 2, 3]),
                                         (0.96, [0, 1, 2, 3]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    assert kept(filter_logits(DIST.double(), top_p=p)) == expected


def test_top_p_after_top_k_and_temperature():
    # Temperature 2 flattens (0.5, 0.05, 0.3, 0.15) to ∝ sqrt: top-2 renormalised is (0.5635, 0.4365),
    # so p = 0.6 needs both.
    logits = filter_logits(DIST.double(), temperature=2.0, top_k=2, top_p=0.6)
    assert kept(logits) == [0, 2]
    torch.testing.assert_close(logits.softmax(-1)[[0, 2]],
                               torch.tensor([0.5 ** 0.5, 0.3 ** 0.5], dtype=torch.float64) / (0.5 ** 0.5 + 0.3 ** 0.5))


def test_temperature_scales_logits():
    torch.testing.assert_close(filter_logits(DIST, temperature=0.5), DIST * 2)


def test_top_k_one_is_greedy():
    logits = torch.randn(5, N_CODES, generator=torch.Generator().manual_seed(0))
    greedy = draw(filter_logits(logits, top_k=1), generators(list(range(5))))
    assert torch.equal(greedy, logits.argmax(-1))


def test_draw_frequencies_follow_the_distribution():
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.cat([draw(DIST[None], [g]) for _ in range(4000)]), minlength=4)
    torch.testing.assert_close(counts / 4000, DIST.exp(), atol=0.03, rtol=0)


@pytest.mark.parametrize("kwargs, message", [({"temperature": 0.0}, "temperature"), ({"top_k": 0}, "top_k"),
                                             ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p")])
def test_invalid_sampling_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        filter_logits(DIST, **kwargs)
    with pytest.raises(ValueError, match=message):
        sample(build(tiny()), generators([0]), **kwargs)


# ----------------------------------------------------------------------------------------------------------
# Training


@pytest.mark.parametrize("conditioning", ["none", "frames"])
def test_a_few_steps_lower_the_loss(conditioning):
    torch.manual_seed(0)
    config = tiny(dropout=0.2, attn_dropout=0.3, **({"context_frames": 1, "num_classes": 2}
                                                    if conditioning == "frames" else {}))
    prior = VideoGPTPrior(config).train()
    c = codes(4)
    kwargs = {}
    if conditioning == "frames":
        kwargs = {"label": torch.tensor([0, 1, 0, 1]), "context": torch.rand(4, 3, 1, 8, 8) * 2 - 1}
    optimizer = torch.optim.Adam(prior.parameters(), lr=1e-2)
    before = prior.eval().loss(c, **kwargs).item()  # log n_codes: the head starts at zero
    prior.train()  # with the paper's dropouts
    for _ in range(40):
        loss = prior.loss(c, **kwargs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(p.grad is not None for p in prior.parameters())
    after = prior.eval().loss(c, **kwargs).item()
    assert after < 0.8 * before


def test_gradient_checkpointing_gives_the_same_loss_and_gradients_with_dropout():
    """Recomputed blocks redraw their dropout masks from the saved random state: the same numbers, less memory."""
    config = tiny(dropout=0.2, attn_dropout=0.3, num_classes=3, context_frames=1)
    label, context = torch.tensor([0, 2]), torch.rand(2, 3, 1, 8, 8, dtype=torch.float64) * 2 - 1
    results = []
    for checkpointing in (False, True):
        prior = build(config).train()
        prior.grad_checkpointing = checkpointing
        torch.manual_seed(5)  # dropout draws from the global generator
        loss = prior.loss(codes(2), label, context)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in prior.parameters()]))
    (loss_plain, grads_plain), (loss_ckpt, grads_ckpt) = results
    assert torch.equal(loss_plain, loss_ckpt)
    for plain, ckpt in zip(grads_plain, grads_ckpt):
        torch.testing.assert_close(ckpt, plain, rtol=1e-12, atol=1e-12)
