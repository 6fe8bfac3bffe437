from collections import Counter

import numpy as np
import pytest

from vidgen.core.clips import ContiguousClips, SparseClips


def test_contiguous_clips_cover_every_start_uniformly():
    clips = ContiguousClips(frames=3, stride=2)  # span 5
    starts = Counter(int(clips.choose(9, np.random.default_rng(s))[0]) for s in range(5000))
    assert sorted(starts) == [0, 1, 2, 3, 4]
    assert max(starts.values()) / min(starts.values()) < 1.2
    np.testing.assert_array_equal(clips.choose(5, np.random.default_rng(0)), [0, 2, 4])


def test_sparse_clips_follow_the_stylegan_v_distribution():
    clips = SparseClips(frames=3, distances=(2, 4, 8, 16, 32))
    assert clips.span == 33
    distances, middles = Counter(), Counter()
    for seed in range(6000):
        frames = clips.choose(40, np.random.default_rng(seed))
        assert len(frames) == 3 and np.all(np.diff(frames) > 0) and frames[0] >= 0 and frames[-1] < 40
        d = int(frames[-1] - frames[0])
        distances[d] += 1
        if d == 8:
            middles[int(frames[1] - frames[0])] += 1
    assert sorted(distances) == [2, 4, 8, 16, 32]
    assert max(distances.values()) / min(distances.values()) < 1.2  # d uniform over the distances
    assert sorted(middles) == list(range(1, 8))  # the middle frame anywhere strictly inside


def test_sparse_clips_use_only_distances_that_fit_a_short_video():
    clips = SparseClips(frames=3, distances=(2, 4, 8))
    seen = {int(np.ptp(clips.choose(6, np.random.default_rng(s)))) for s in range(300)}
    assert seen == {2, 4}
    with pytest.raises(ValueError):
        clips.choose(2, np.random.default_rng(0))


def test_sparse_clips_reject_impossible_settings():
    with pytest.raises(ValueError):
        SparseClips(frames=4, distances=(2,))
