import numpy as np
import pytest

from vidgen.metrics.kvd import kernel_distance, mmd2_unbiased, polynomial_kernel


def _mmd2_by_loops(x, y):
    """The unbiased estimator written term by term (Gretton et al. 2012, eq. 3)."""
    k = lambda a, b: (a @ b / len(a) + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_matches_the_estimator_written_out():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(9, 5)) + 0.5
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_by_loops(x, y), rel=1e-12)


def test_kernel_value():
    x = np.array([[1.0, 2.0]])
    y = np.array([[3.0, 4.0]])
    assert polynomial_kernel(x, y)[0, 0] == pytest.approx((11 / 2 + 1) ** 3)


def test_unbiased_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    same = [mmd2_unbiased(rng.normal(size=(200, 16)), rng.normal(size=(200, 16))) for _ in range(20)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-3  # unbiased: mean ~ 0
    assert mmd2_unbiased(rng.normal(size=(200, 16)), rng.normal(size=(200, 16)) + 1.0) > 10 * max(map(abs, same))


def test_subsets_are_seeded_and_average_estimates():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(60, 4)), rng.normal(size=(50, 4)) + 0.3
    a = kernel_distance(x, y, num_subsets=5, subset_size=20, seed=3)
    assert a == kernel_distance(x, y, num_subsets=5, subset_size=20, seed=3)
    assert a != kernel_distance(x, y, num_subsets=5, subset_size=20, seed=4)
    assert kernel_distance(x, y) == pytest.approx(mmd2_unbiased(x, y))
