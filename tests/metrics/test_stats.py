import numpy as np
import pytest

from vidgen.metrics.stats import FeatureBank, MomentAccumulator


def test_streaming_equals_batch_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 24)) @ rng.normal(size=(24, 24)) + 5.0
    acc = MomentAccumulator(24)
    for batch in np.array_split(x, [1, 7, 300, 301, 640]):  # uneven batches, one of a single row
        acc.update(batch)
    assert acc.count == 1000
    np.testing.assert_allclose(acc.mean, x.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(acc.covariance, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-10)


def test_does_not_lose_precision_far_from_the_origin():
    # Naive Σx and Σxxᵀ would subtract ~4e15 from ~4e15 to get ~4e-3: no digit left. The pairwise update
    # never forms those sums.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 4)) * 1e-3 + 1e6
    acc = MomentAccumulator(4)
    for batch in np.array_split(x, 40):
        acc.update(batch)
    np.testing.assert_allclose(acc.covariance, np.cov(x, rowvar=False), rtol=1e-6, atol=1e-14)


def test_order_of_batches_does_not_matter():
    x = np.random.default_rng(2).normal(size=(300, 5))
    forward, backward = MomentAccumulator(5), MomentAccumulator(5)
    for batch in np.array_split(x, 6):
        forward.update(batch)
    for batch in reversed(np.array_split(x, 6)):
        backward.update(batch)
    np.testing.assert_allclose(forward.covariance, backward.covariance, rtol=1e-12)


def test_covariance_needs_two_samples():
    acc = MomentAccumulator(3)
    acc.update(np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        _ = acc.covariance


def test_feature_bank_keeps_rows_up_to_its_capacity():
    bank = FeatureBank(3, capacity=5)
    bank.update(np.arange(6).reshape(2, 3))
    bank.update(np.arange(9).reshape(3, 3))
    assert bank.features.shape == (5, 3) and bank.features.dtype == np.float32
    with pytest.raises(ValueError, match="at most 5"):
        bank.update(np.zeros((1, 3)))
