"""The EMA codebook (vidgen/models/videogpt/codebook.py) against its closed form and the official rules."""

from __future__ import annotations

import pytest
import torch

from vidgen.models.videogpt.codebook import LAPLACE_EPS, Codebook, CodebookStats, restart_candidates


def hand_made_codebook() -> Codebook:
    """3 codes in 2-D at known places, already past the first (initialising) update, all alive."""
    cb = Codebook(n_codes=3, embedding_dim=2, decay=0.9)
    e = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    cb.embeddings.copy_(e)
    cb.m.copy_(e * 2.0)
    cb.N.fill_(2.0)
    cb.initialised.fill_(True)
    return cb


def as_video(flat: torch.Tensor) -> torch.Tensor:
    """(M, D) -> (1, D, M, 1, 1): rows as the positions of a one-clip video."""
    return flat.t()[None, :, :, None, None]


def test_assignment_and_statistics_on_a_hand_made_batch():
    cb = hand_made_codebook()
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0], [11.0, -1.0]])
    q = cb(as_video(z), torch.Generator().manual_seed(0))
    assert q.codes.flatten().tolist() == [0, 0, 1, 1]
    assert q.stats.counts.tolist() == [2.0, 2.0, 0.0]
    assert torch.equal(q.stats.sums, torch.tensor([[1.0, 1.0], [20.0, 0.0], [0.0, 0.0]]))
    # commitment: mean over elements of (z - e)², unweighted
    e = torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0], [10.0, 0.0]])
    assert q.commitment.item() == pytest.approx(((z - e) ** 2).mean().item())
    assert q.perplexity.item() == pytest.approx(2.0)  # two codes used equally
    assert q.codes_used.item() == pytest.approx(2 / 3)


def test_ema_update_matches_closed_form():
    cb = hand_made_codebook()
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0], [11.0, -1.0]])
    stats = cb(as_video(z), torch.Generator().manual_seed(0)).stats
    N0, m0 = cb.N.double().clone(), cb.m.double().clone()
    cb.update(stats)

    counts = torch.tensor([2.0, 2.0, 0.0], dtype=torch.float64)
    sums = torch.tensor([[1.0, 1.0], [20.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    N = 0.9 * N0 + 0.1 * counts  # [2.0, 2.0, 1.8]
    m = 0.9 * m0 + 0.1 * sums
    n = N.sum()
    smoothed = (N + LAPLACE_EPS) / (n + 3 * LAPLACE_EPS) * n  # official Laplace smoothing
    expected = m / smoothed[:, None]
    torch.testing.assert_close(cb.N.double(), N)
    torch.testing.assert_close(cb.m.double(), m)
    torch.testing.assert_close(cb.embeddings.double(), expected)
    # and by hand: code 0 = (0.9·0 + 0.1·(1, 1)) / 2, code 2 (unused, still alive) = 0.9·(0, 20) / 1.8
    torch.testing.assert_close(cb.embeddings[0], torch.tensor([0.05, 0.05]))
    torch.testing.assert_close(cb.embeddings[2], torch.tensor([0.0, 10.0]))


def test_statistics_add_over_micro_batches_like_one_batch():
    cb = hand_made_codebook()
    z = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)) * 5
    whole = cb(as_video(z)).stats
    halves = cb(as_video(z[:4])).stats + cb(as_video(z[4:])).stats
    torch.testing.assert_close(whole.counts, halves.counts)
    torch.testing.assert_close(whole.sums, halves.sums)


def test_forward_changes_no_state():
    cb = hand_made_codebook()
    before = {k: v.clone() for k, v in cb.state_dict().items()}
    cb.train()
    cb(as_video(torch.randn(5, 2, generator=torch.Generator().manual_seed(0))))
    for k, v in cb.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_dead_codes_are_restarted_from_encoder_outputs():
    cb = hand_made_codebook()
    cb.N.copy_(torch.tensor([5.0, 5.0, 1.05]))  # code 2 will fall to 0.945 < 1 when unused this step
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0], [11.0, -1.0], [0.5, 0.5], [10.5, 0.5]])
    q = cb(as_video(z), torch.Generator().manual_seed(1))
    assert q.stats.counts[2] == 0
    logs = cb.update(q.stats)
    assert logs["codes_restarted"] == pytest.approx(1 / 3)
    # the restarted code is one of this batch's encoder vectors (6 vectors >= 3 codes: no jitter)
    assert any(torch.equal(cb.embeddings[2], row) for row in z)
    # the live codes followed the EMA
    assert not torch.equal(cb.embeddings[0], torch.zeros(2))
    # official rule: N and m of the restarted code keep their EMA values
    assert cb.N[2].item() == pytest.approx(0.9 * 1.05)


def test_restart_candidates_from_a_small_batch_are_jittered_repeats():
    flat = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    c = restart_candidates(flat, 5, torch.Generator().manual_seed(0))
    assert c.shape == (5, 2)
    nearest = torch.cdist(c, flat).min(dim=1).values
    assert (nearest < 0.1).all() and (nearest > 0).all()  # close to an input, jittered by 0.01/sqrt(D)


def test_first_update_initialises_from_encoder_outputs():
    cb = Codebook(n_codes=4, embedding_dim=3)
    z = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    stats = cb(as_video(z), torch.Generator().manual_seed(0)).stats
    cb.update(stats)
    assert bool(cb.initialised)
    assert torch.equal(cb.N, torch.ones(4))
    for row in cb.embeddings:
        assert any(torch.equal(row, v) for v in z)
    torch.testing.assert_close(cb.m, cb.embeddings)


def test_ranks_stay_identical_through_sum_over_ranks():
    """Two simulated ranks: summing their statistics gives the single-process update on the joint batch, and both
    ranks restart with the source rank's candidates."""
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(6, 2, generator=g) * 5, torch.randn(6, 2, generator=g) * 5
    ranks = [hand_made_codebook(), hand_made_codebook()]
    for cb in ranks:
        cb.N.copy_(torch.tensor([5.0, 5.0, 0.5]))  # code 2 dead: restarted from the source rank
    stats = [ranks[0](as_video(z_a), torch.Generator().manual_seed(0)).stats,
             ranks[1](as_video(z_b), torch.Generator().manual_seed(1)).stats]

    # A fake all-reduce in two passes: a dry run records what each rank sends to each collective, then the real
    # update receives, per collective, the sum of both ranks' tensors.
    calls: list[list[torch.Tensor]] = [[], []]

    def make_sum(rank: int):
        def record(t: torch.Tensor) -> torch.Tensor:
            calls[rank].append(t)
            return t
        return record

    for rank, cb in enumerate(ranks):
        cb_copy = hand_made_codebook()
        cb_copy.load_state_dict(cb.state_dict())
        cb_copy.update(stats[rank], make_sum(rank), is_source_rank=rank == 0)
    summed = [calls[0][i] + calls[1][i] for i in range(len(calls[0]))]
    for rank, cb in enumerate(ranks):
        it = iter(summed)
        cb.update(stats[rank], lambda t: next(it), is_source_rank=rank == 0)

    joint = hand_made_codebook()
    joint.N.copy_(torch.tensor([5.0, 5.0, 0.5]))
    joint_stats = CodebookStats(stats[0].counts + stats[1].counts, stats[0].sums + stats[1].sums,
                                stats[0].candidates)
    joint.update(joint_stats)
    for cb in ranks:
        for k, v in joint.state_dict().items():
            torch.testing.assert_close(cb.state_dict()[k], v, msg=k)
