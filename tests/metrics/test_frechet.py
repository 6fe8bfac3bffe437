import numpy as np
import pytest

from vidgen.metrics.frechet import frechet_distance


def _independent_fd(mu1, sigma1, mu2, sigma2):
    """Tr((Σ₁Σ₂)^½) as the sum of square roots of the eigenvalues of Σ₁^½ Σ₂ Σ₁^½ (symmetric PSD, similar
    to Σ₁Σ₂): a route through eigh that shares nothing with sqrtm."""
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.clip(np.linalg.eigvalsh(root1 @ sigma2 @ root1), 0, None)
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(eig).sum()


@pytest.mark.parametrize("sigma1, sigma2, expected", [
    (np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 9.0, 16.0]), 3.0),  # Σ (√a − √b)² = 1 + 1 + 1
    (np.array([[2.0, 1.0], [1.0, 2.0]]), np.eye(2), 4.0 - 2.0 * np.sqrt(3.0)),  # eigenvalues 1, 3
    (2.0 * np.eye(400), 0.5 * np.eye(400), 200.0),  # 400 · (√2 − √0.5)² = 400 · 0.5
])
def test_closed_forms(sigma1, sigma2, expected):
    zeros = np.zeros(len(sigma1))
    assert frechet_distance(zeros, sigma1, zeros, sigma2) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_equal_covariances_leave_the_mean_term():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 8))
    sigma = a.T @ a / 50
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-7)


@pytest.mark.parametrize("dim, samples", [(16, 200), (64, 500), (256, 1000)])
def test_matches_an_independent_float64_route_on_random_data(dim, samples):
    rng = np.random.default_rng(dim)
    x = rng.normal(size=(samples, dim)) @ rng.normal(size=(dim, dim))
    y = rng.normal(size=(samples, dim)) @ rng.normal(size=(dim, dim)) + 0.3
    args = (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert frechet_distance(*args) == pytest.approx(_independent_fd(*args), rel=1e-6)


def test_rank_deficient_covariances_stay_finite_and_a_set_is_near_itself():
    # Fewer samples than dimensions: singular covariances, where sqrtm is least accurate.
    x = np.random.default_rng(1).normal(size=(6, 100))
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    value = frechet_distance(mu, sigma, mu, sigma)
    assert np.isfinite(value) and abs(value) < 1e-2 * np.trace(sigma)


def test_retries_with_eps_when_the_square_root_is_not_finite(monkeypatch):
    from vidgen.metrics import frechet

    calls = []

    def flaky_sqrtm(matrix):
        calls.append(matrix.copy())
        return np.full_like(matrix, np.nan) if len(calls) == 1 else 0.5 * np.eye(len(matrix))

    monkeypatch.setattr(frechet, "_sqrtm", flaky_sqrtm)
    value = frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), eps=0.5)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], 1.5 * np.eye(2) @ (1.5 * np.eye(2)))  # (Σ₁ + εI)(Σ₂ + εI)
    assert value == pytest.approx(2.0)  # tr Σ₁ + tr Σ₂ − 2 tr(I / 2) = 2 + 2 − 2


def test_rejects_matrices_that_are_not_covariances():
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.array([[1.0, 0.0], [0.0, -1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
