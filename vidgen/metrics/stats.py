"""Streaming feature statistics in float64: bounded memory whatever the number of samples.

Mean and covariance are merged batch by batch with the pairwise update of Chan, Golub & LeVeque (1979),
eq. (2.1): for sets A and B with counts n_A, n_B, means m_A, m_B and scatter matrices M_A, M_B,

    n = n_A + n_B,  δ = m_B − m_A,  m = m_A + δ·n_B/n,  M = M_A + M_B + δδᵀ·n_A·n_B/n,

and the (unbiased) covariance is M / (n − 1). Unlike summing x and xxᵀ, nothing large is subtracted at the
end, so features far from the origin (I3D logits) lose no precision. Memory is O(D²), not O(N·D).
"""

from __future__ import annotations

import numpy as np


class MomentAccumulator:
    """Running count, mean [D] and scatter matrix [D, D] of feature rows."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.count = 0
        self.mean = np.zeros(dim, np.float64)
        self.scatter = np.zeros((dim, dim), np.float64)  # Σ (x − mean)(x − mean)ᵀ

    def update(self, features: np.ndarray) -> None:
        """Add a batch of rows [N, D]."""
        batch = np.asarray(features, np.float64).reshape(-1, self.dim)
        if len(batch) == 0:
            return
        batch_mean = batch.mean(axis=0)
        centred = batch - batch_mean
        self.merge(len(batch), batch_mean, centred.T @ centred)

    def merge(self, count: int, mean: np.ndarray, scatter: np.ndarray) -> None:
        """Add a set summarised by (count, mean, scatter) — Chan et al. (1979), eq. (2.1)."""
        total = self.count + count
        delta = mean - self.mean
        self.scatter += scatter + np.outer(delta, delta) * (self.count * count / total)
        self.mean += delta * (count / total)
        self.count = total

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased covariance [D, D] (divides by N − 1, as np.cov does)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.count}")
        return self.scatter / (self.count - 1)


class FeatureBank:
    """All feature rows, kept in float32 for kernel metrics (KVD keeps 2048 x 400: 3 MB).

    Preallocated to `capacity` rows so memory is known up front; adding more is a bug in the caller.
    """

    def __init__(self, dim: int, capacity: int) -> None:
        self.dim = dim
        self._rows = np.empty((capacity, dim), np.float32)
        self.count = 0

    def update(self, features: np.ndarray) -> None:
        batch = np.asarray(features).reshape(-1, self.dim)
        end = self.count + len(batch)
        if end > len(self._rows):
            raise ValueError(f"FeatureBank holds at most {len(self._rows)} rows, got {end}")
        self._rows[self.count:end] = batch
        self.count = end

    @property
    def features(self) -> np.ndarray:
        return self._rows[:self.count]
