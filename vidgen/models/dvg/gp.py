"""DVG's GP layer (Shrivastava & Shrivastava 2021; the released gp_models.GPRegressionLayer1): one
independent 1-D Gaussian process per latent dimension d, mapping h_t[d] to h_{t+1}[d], so that the GPs' predictive
variance at a frame's latent says how many futures are plausible from it.

Sparse variational GPs (Titsias 2009; Hensman et al. 2015) in GPyTorch: per dimension, `inducing_points` learned
inducing locations (initialised uniformly in [0, 1)), a whitened Cholesky variational distribution q(u), a constant
mean, a scaled RBF kernel, and a Gaussian likelihood, each with batch shape [g_dim]. All inference is GPyTorch's.

Every GP computation runs in float32 with autocast off (gp_precision): Cholesky factorisations do not run in
bfloat16, and a mixed-precision training step then still gets the same GP terms as a float32 one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import gpytorch
import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.utils.memoize import clear_cache_hook
from torch import nn


@contextlib.contextmanager
def gp_precision(device: torch.device) -> Iterator[None]:
    """The GP's maths in its own precision (float32 in a model) under any autocast the caller is in."""
    with torch.autocast(device.type, enabled=False):
        yield


class LatentGPLayer(gpytorch.models.ApproximateGP):
    """`dims` independent variational GPs with 1-D inputs: inputs [dims, B, 1] -> q(f) with batch shape [dims]
    and B points each (the reference's GPRegressionLayer1, on GPyTorch's current ApproximateGP)."""

    def __init__(self, dims: int, inducing_points: int) -> None:
        batch = torch.Size([dims])
        locations = torch.rand(dims, inducing_points, 1)  # U[0, 1), from the caller's (seeded) generator
        distribution = gpytorch.variational.CholeskyVariationalDistribution(inducing_points, batch_shape=batch)
        strategy = gpytorch.variational.VariationalStrategy(self, locations, distribution,
                                                            learn_inducing_locations=True)  # whitened
        super().__init__(strategy)
        self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch)
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(batch_shape=batch),
                                                         batch_shape=batch)

    def forward(self, x: torch.Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))


class LatentGP(nn.Module):
    """The GP layer and its Gaussian likelihood, on latents: h [B, g_dim] (dimension d is GP d's input)."""

    def __init__(self, dims: int, inducing_points: int) -> None:
        super().__init__()
        self.dims = dims
        self.layer = LatentGPLayer(dims, inducing_points)
        self.likelihood = gpytorch.likelihoods.GaussianLikelihood(batch_shape=torch.Size([dims]))
        self._initialise_variational_distribution()

    @torch.no_grad()
    def _initialise_variational_distribution(self) -> None:
        """GPyTorch sets q(u) on the first training call (the whitened prior N(0, I) plus 1e-3 noise from the
        global generator); doing it here makes it part of the seeded initialisation, not of the first step."""
        was_training = self.training
        self.train()
        self.layer(torch.zeros(self.dims, 1, 1))
        clear_cache_hook(self.layer.variational_strategy)
        self.train(was_training)

    @property
    def dtype(self) -> torch.dtype:
        """The GP's own precision (float32 in a model; float64 in tests against closed forms)."""
        return self.likelihood.noise.dtype

    def _inputs(self, h: torch.Tensor) -> torch.Tensor:
        """[B, g_dim] latents -> [g_dim, B, 1] GP inputs in the GP's precision."""
        return h.to(self.dtype).transpose(0, 1).unsqueeze(-1)

    def forward(self, h: torch.Tensor) -> MultivariateNormal:
        """q(f) at latents h [B, g_dim]: batch shape [g_dim], B points each (its mean [g_dim, B]). Call it
        under gp_precision."""
        if not self.training:  # GPyTorch caches K_uu's Cholesky in eval mode, stale after any weight change
            clear_cache_hook(self.layer.variational_strategy)
        return self.layer(self._inputs(h))

    def neg_elbo(self, f: MultivariateNormal, target: torch.Tensor, num_data: int) -> torch.Tensor:
        """-ELBO summed over the latent dimensions (the reference's -mll(...).sum()): per dimension, the expected
        log-likelihood of target [B, g_dim] averaged over the B points, minus KL(q(u) || p(u)) / num_data.

        num_data must be the step's global batch whatever the micro-batch, so that gradient accumulation and
        ranks, which average the micro-batches' losses, count the KL term once per optimizer step."""
        elbo = gpytorch.mlls.VariationalELBO(self.likelihood, self.layer, num_data=num_data)
        return -elbo(f, target.to(self.dtype).transpose(0, 1)).sum()  # elbo(...): [g_dim]

    def predictive(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The marginal predictive distribution of the next latent, likelihood noise included, at latents h
        [B, g_dim]: (mean, variance), each [B, g_dim] in the GP's precision. Point b depends on h[b] alone
        (marginals only, no joint draw over the batch)."""
        with gp_precision(h.device):
            predictive = self.likelihood(self(h))
            return predictive.mean.transpose(0, 1), predictive.variance.transpose(0, 1)
