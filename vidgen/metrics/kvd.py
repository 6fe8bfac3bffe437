"""Kernel distances (KID for images, KVD for videos): the unbiased MMD² with a cubic polynomial kernel.

Bińkowski et al., "Demystifying MMD GANs" (ICLR 2018): k(x, y) = (xᵀy / d + 1)³ and, for samples X (m rows)
and Y (n rows), the unbiased estimator (Gretton et al. 2012, eq. (3))

    MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(xᵢ, xⱼ) + 1/(n(n−1)) Σ_{i≠j} k(yᵢ, yⱼ) − 2/(mn) Σ_{i,j} k(xᵢ, yⱼ).

KID averages it over random subsets (100 subsets of 1000); DIGAN's KVD uses every sample at once.
Values are returned as they are (some papers print KVD x 1000).
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (xᵀy / d + 1)³ for all pairs: [m, d], [n, d] -> [m, n]."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² between rows of x [m, d] and rows of y [n, d] (m, n >= 2), in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n = len(x), len(y)
    if m < 2 or n < 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need >= 2 rows of equal width on each side, got {x.shape} and {y.shape}")
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))  # i ≠ j: drop the diagonal
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kernel_distance(x: np.ndarray, y: np.ndarray, num_subsets: int | None = None, subset_size: int | None = None,
                    seed: int = 0) -> float:
    """MMD²_u on all rows (num_subsets None), or its mean over `num_subsets` random subsets of
    min(subset_size, m, n) rows per side, drawn without replacement within a subset."""
    if num_subsets is None:
        return mmd2_unbiased(x, y)
    size = min(subset_size or len(x), len(x), len(y))
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)])
              for _ in range(num_subsets)]
    return float(np.mean(values))
