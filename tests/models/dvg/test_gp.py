"""The GP layer (vidgen.models.dvg.gp) against GPyTorch's exact GP, and its ELBO's independence of how a batch is
split."""

from __future__ import annotations

import gpytorch
import pytest
import torch

from vidgen.models.dvg.gp import LatentGP

LENGTHSCALE, OUTPUTSCALE, MEAN, NOISE = 0.1, 1.3, 0.2, 0.04
TOLERANCE = 1e-5
"""|variational - exact| for the predictive mean and variance (float64, inducing points at the data, the
variational parameters optimised to convergence by L-BFGS): the two are the same distribution then, up to the
optimiser's tolerance and GPyTorch's 1e-6 (float64) jitter on the covariances (measured: 2e-7 on the mean, 2e-6
on the variance). The points are evenly spaced about one lengthscale apart, so that K_uu is well conditioned
(condition number ~40): near-duplicate inputs would let the jitter alone move the mean by 1e-3."""


def toy_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """20 noisy points of sin(3x) on [0, 2] and test inputs between and beyond them (float64)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 2, 20, dtype=torch.float64)
    y = torch.sin(3 * x) + 0.2 * torch.randn(20, generator=generator, dtype=torch.float64)
    test = torch.linspace(-0.3, 2.3, 17, dtype=torch.float64)
    return x, y, test


def set_hyperparameters(mean: gpytorch.means.ConstantMean, kernel: gpytorch.kernels.ScaleKernel,
                        likelihood: gpytorch.likelihoods.GaussianLikelihood) -> None:
    mean.constant = MEAN
    kernel.base_kernel.lengthscale = LENGTHSCALE
    kernel.outputscale = OUTPUTSCALE
    likelihood.noise = NOISE


class ExactModel(gpytorch.models.ExactGP):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, likelihood: gpytorch.likelihoods.GaussianLikelihood):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def exact_predictive(x: torch.Tensor, y: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    model = ExactModel(x, y, likelihood).double()
    set_hyperparameters(model.mean_module, model.covar_module, likelihood)
    model.eval()
    likelihood.eval()
    with torch.no_grad():
        predictive = likelihood(model(test))
        return predictive.mean, predictive.variance


def fit_variational(x: torch.Tensor, y: torch.Tensor) -> LatentGP:
    """A one-dimension LatentGP with its inducing points fixed at the training inputs and the exact model's
    hyperparameters; only q(u) is optimised, on the ELBO over all the data."""
    gp = LatentGP(dims=1, inducing_points=len(x)).double()
    strategy = gp.layer.variational_strategy
    strategy.inducing_points.data = x[None, :, None].clone()
    set_hyperparameters(gp.layer.mean_module, gp.layer.covar_module, gp.likelihood)
    for parameter in gp.parameters():
        parameter.requires_grad_(False)
    variational = list(strategy._variational_distribution.parameters())  # the mean and Cholesky factor of q(u)
    for parameter in variational:
        parameter.requires_grad_(True)
    optimizer = torch.optim.LBFGS(variational, lr=1.0, max_iter=500, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = gp.neg_elbo(gp(x[:, None]), y[:, None], num_data=len(x))
        loss.backward()
        return loss

    gp.train()
    for _ in range(5):
        optimizer.step(closure)
    return gp.eval()


def test_the_variational_layer_with_inducing_points_at_the_data_is_the_exact_gp():
    x, y, test = toy_problem()
    want_mean, want_variance = exact_predictive(x, y, test)
    gp = fit_variational(x, y)
    with torch.no_grad():
        mean, variance = gp.predictive(test[:, None])  # [17, 1] each
    assert mean.dtype == torch.float64
    torch.testing.assert_close(mean[:, 0], want_mean, rtol=0, atol=TOLERANCE)
    torch.testing.assert_close(variance[:, 0], want_variance, rtol=0, atol=TOLERANCE)
    # Not trivially so: the prior alone is far from it.
    assert (variance[:, 0] - (OUTPUTSCALE + NOISE)).abs().max() > 0.5


def test_the_kl_term_is_counted_once_however_the_batch_is_split():
    """The loop averages micro-batch losses, so with num_data = the global batch, the mean of the halves' -ELBOs
    is the whole batch's."""
    torch.manual_seed(0)
    gp = LatentGP(dims=3, inducing_points=5)
    h, target = torch.rand(8, 3), torch.rand(8, 3)
    whole = gp.neg_elbo(gp(h), target, num_data=8)
    halves = [gp.neg_elbo(gp(h[part]), target[part], num_data=8) for part in (slice(0, 4), slice(4, 8))]
    torch.testing.assert_close(sum(halves) / 2, whole)


def test_predictive_marginals_are_per_point_and_include_the_noise():
    torch.manual_seed(0)
    gp = LatentGP(dims=4, inducing_points=6).eval()
    h = torch.rand(5, 4)
    with torch.no_grad():
        mean, variance = gp.predictive(h)
        alone_mean, alone_variance = gp.predictive(h[2:3])
        f = gp(h)
    assert mean.shape == variance.shape == (5, 4)
    torch.testing.assert_close(alone_mean[0], mean[2], rtol=0, atol=1e-6)
    torch.testing.assert_close(alone_variance[0], variance[2], rtol=0, atol=1e-6)
    torch.testing.assert_close(variance, f.variance.T + gp.likelihood.noise.T, rtol=1e-6, atol=1e-6)


def test_initialisation_is_seeded_and_leaves_no_stale_cache():
    torch.manual_seed(1)
    first = LatentGP(dims=2, inducing_points=4)
    torch.manual_seed(1)
    second = LatentGP(dims=2, inducing_points=4)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    assert first.layer.variational_strategy.variational_params_initialized.item() == 1
    # GPyTorch caches K_uu's Cholesky factor in eval mode; a weight change (an optimizer step, a loaded
    # checkpoint) must not leave predictions on the old one.
    distribution = first.layer.variational_strategy._variational_distribution
    with torch.no_grad():
        distribution.variational_mean.fill_(1.0)
        distribution.chol_variational_covar.copy_(0.3 * torch.eye(4).expand(2, 4, 4))
    h = torch.rand(3, 2)
    first.eval()
    with torch.no_grad():
        first.predictive(h)  # fills the cache
        first.layer.covar_module.base_kernel.lengthscale = torch.tensor([0.1, 0.1])
        got = first.predictive(h)
        fresh = LatentGP(dims=2, inducing_points=4)
        fresh.load_state_dict(first.state_dict())
        want = fresh.eval().predictive(h)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_the_gp_runs_in_float32_under_autocast(dtype):
    torch.manual_seed(0)
    gp = LatentGP(dims=3, inducing_points=5)
    h, target = torch.rand(6, 3), torch.rand(6, 3)
    want = gp.neg_elbo(gp(h), target, num_data=6)
    with torch.autocast("cpu", dtype=dtype):
        from vidgen.models.dvg.gp import gp_precision

        with gp_precision(h.device):
            got = gp.neg_elbo(gp(h.to(dtype)), target.to(dtype), num_data=6)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)  # the inputs were rounded to bfloat16
