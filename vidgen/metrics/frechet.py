"""The Fréchet distance between two Gaussians, in float64 (pure maths: numpy and scipy only).

    d²(N(μ₁, Σ₁), N(μ₂, Σ₂)) = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)

Dowson & Landau (1982), eq. (2); the FID of Heusel et al. (2017), eq. (6), and the FVD of Unterthiner et al.
(2018), eq. (1), are this distance between detector features of real and generated samples.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

IMAGINARY_TOLERANCE = 1e-3
"""Largest |imaginary part| (relative to the largest |real part|) on the diagonal of (Σ₁ Σ₂)^½ that is taken
for round-off. Σ₁ Σ₂ is similar to a positive semi-definite matrix, so its square root is real in exact
arithmetic; a larger imaginary part means the covariances are not covariances."""


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """d² between N(mu1, sigma1) and N(mu2, sigma2); mu: [D], sigma: [D, D].

    When (Σ₁ Σ₂)^½ comes out non-finite (nearly singular products, e.g. fewer samples than dimensions),
    it is recomputed as ((Σ₁ + εI)(Σ₂ + εI))^½, the usual regularisation.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    dim = mu1.shape[0]
    if mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")

    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(dim)
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise ValueError("the square root of sigma1 @ sigma2 is not finite even with eps * I added")
    covmean = _real_part(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    # scipy warns (and before 1.16 printed) when the matrix is singular; singular products are expected
    # here and handled by the finiteness check, so the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        result = scipy.linalg.sqrtm(matrix)
    return np.asarray(result[0] if isinstance(result, tuple) else result)  # scipy < 1.16 with disp=False


def _real_part(matrix: np.ndarray) -> np.ndarray:
    if not np.iscomplexobj(matrix):
        return matrix
    diagonal = np.diagonal(matrix)
    scale = max(float(np.abs(matrix.real).max()), 1e-12)
    if np.abs(diagonal.imag).max() > IMAGINARY_TOLERANCE * scale:
        raise ValueError(f"(sigma1 @ sigma2)^1/2 has an imaginary part of {np.abs(diagonal.imag).max():.3g} on "
                         "its diagonal; the covariances are not positive semi-definite")
    return matrix.real
