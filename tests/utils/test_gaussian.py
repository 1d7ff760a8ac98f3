"""Gaussian log-likelihood loss and posterior mean vs the official per-pixel matrix algebra
(per-pixel torch.inverse / torch.det, here in float64; see benchmarks/gaussian_algebra.py)."""
from __future__ import annotations

import math

import pytest
import torch

from benchmarks.gaussian_algebra import reference_loss as official_loss
from benchmarks.gaussian_algebra import reference_posterior as official_posterior
from benchmarks.gaussian_algebra import well_conditioned_output
from tests.golden import load_golden
from utils.gaussian import loglike_loss, posterior_mean, scaled_prior

SIGMA = 30 / 255


def reference_loss(out, noisy, sigma):
    return official_loss(out, noisy, sigma, dtype=torch.float64)


def reference_posterior(out, noisy, sigma):
    return official_posterior(out, noisy, sigma, dtype=torch.float64)


def _random_case(n=2, t=2, h=5, w=7, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(n, t, 9, h, w, generator=g) * scale
    noisy = torch.rand(n, t, 3, h, w, generator=g)
    return out, noisy


def test_loss_matches_golden():
    golden = load_golden()
    loss = loglike_loss(golden["crafted_output"], golden["stbn_input_noisy"], SIGMA)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - golden["loss_loglike"].item()) < 1e-5


def test_posterior_matches_golden_and_exact_reference():
    """The golden vector was made with float32 inverses, which carry up to ~1.4e-4 error on a few
    pixels; against the same algebra in float64 we agree to 1e-6, and to the golden vector within
    its own float32 error (99% of values within 1e-5)."""
    golden = load_golden()
    out, noisy = golden["crafted_output"], golden["stbn_input_noisy"]
    ours = posterior_mean(out, noisy, SIGMA)
    assert ours.shape == noisy.shape and ours.dtype == torch.float32
    exact = reference_posterior(out, noisy, SIGMA)
    assert (ours.double() - exact).abs().max().item() < 1e-6
    err = (ours - golden["posterior_mean"]).abs().flatten()
    assert err.quantile(0.99).item() < 1e-5
    assert err.max().item() < 2e-4


@pytest.mark.parametrize("sigma", [SIGMA, torch.tensor([10 / 255, 50 / 255])])
def test_random_outputs_match_reference(sigma):
    out, noisy = _random_case()
    assert abs(loglike_loss(out, noisy, sigma).item() - reference_loss(out, noisy, sigma).item()) < 1e-5
    diff = posterior_mean(out, noisy, sigma).double() - reference_posterior(out, noisy, sigma)
    assert diff.abs().max().item() < 1e-5


def test_per_sample_sigma_equals_separate_calls():
    out, noisy = _random_case()
    sigmas = torch.tensor([0.05, 0.2]).view(2, 1, 1, 1, 1)  # the training loop's (N,1,1,1,1) shape
    joint = posterior_mean(out, noisy, sigmas)
    for k, s in enumerate((0.05, 0.2)):
        alone = posterior_mean(out[k:k + 1], noisy[k:k + 1], s)
        assert torch.allclose(joint[k:k + 1], alone, atol=1e-7)
    per_sample = loglike_loss(out, noisy, sigmas)
    halves = [loglike_loss(out[k:k + 1], noisy[k:k + 1], s) for k, s in enumerate((0.05, 0.2))]
    assert abs(per_sample.item() - sum(h.item() for h in halves) / 2) < 1e-5


def test_posterior_with_zero_factor_is_the_wiener_blend():
    """A = 0: prior covariance 1e-5 I, so x = (mu/1e-5 + y/s) / (1/1e-5 + 1/s), s = sigma^2 + 1e-5."""
    out, noisy = _random_case(n=1)
    out[:, :, 3:] = 0
    s = SIGMA ** 2 + 1e-5
    expected = (out[:, :, :3].double() / 1e-5 + noisy.double() / s) / (1 / 1e-5 + 1 / s)
    assert (posterior_mean(out, noisy, SIGMA).double() - expected).abs().max().item() < 1e-6
    loss = loglike_loss(out, noisy, SIGMA).item()
    r2 = ((noisy - out[:, :, :3]).double() ** 2).sum(2)
    assert abs(loss - (0.5 * r2 / s + 1.5 * math.log(s)).mean().item()) < 1e-5


@pytest.mark.parametrize("scale", [1e18, 1e30, 0.0])
def test_huge_or_degenerate_outputs_stay_finite(scale):
    out, noisy = _random_case(scale=1.0)
    out[:, :, 3:] *= scale
    out[0, 0, 3:, 0, 0] = torch.tensor([1e30, 1e30, 1e30, 1e30, 1e30, 0.0])  # rank-deficient AtA
    out.requires_grad_(True)
    loss = loglike_loss(out, noisy, SIGMA)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(out.grad).all()
    post = posterior_mean(out.detach(), noisy, SIGMA)
    assert torch.isfinite(post).all()
    # A huge full-rank prior covariance trusts the noisy pixel: the posterior tends to y
    # (pixel (0,0) is rank-deficient, so there the prior still pins one direction).
    if scale >= 1e18:
        gap = (post - noisy).abs()
        gap[0, 0, :, 0, 0] = 0
        assert gap.max().item() < 1e-3


def test_loss_gradient_matches_reference():
    out, noisy = _random_case(n=1, t=1, h=3, w=3)
    ours = out.clone().requires_grad_(True)
    loglike_loss(ours, noisy, SIGMA).backward()
    ref = out.double().clone().requires_grad_(True)
    reference_loss(ref, noisy, SIGMA).backward()
    assert torch.allclose(ours.grad.double(), ref.grad, atol=1e-6)


def test_large_values_take_the_float64_path_and_stay_exact():
    """Pixels above the float32-safe range (1e3) are redone in float64, mixed with normal ones."""
    out = well_conditioned_output(1, 2, 6, 5).double()
    noisy = out[:, :, :3] + 0.1
    out[0, 1, 3:, 2, 3] *= 1e5  # a huge, still well-conditioned factor at one pixel
    out[0, 0, :3, 4, 4] = 2e3  # a huge mean at another
    exact_post = reference_posterior(out, noisy, SIGMA)
    exact_loss = reference_loss(out, noisy, SIGMA).item()
    post = posterior_mean(out.float(), noisy.float(), SIGMA)
    # float32 output: relative precision (the mean-2e3 pixel lands near 1e3)
    assert ((post.double() - exact_post).abs() / exact_post.abs().clamp(min=1)).max().item() < 1e-6
    loss = loglike_loss(out.float(), noisy.float(), SIGMA).item()
    assert abs(loss - exact_loss) < 1e-5 * max(1.0, abs(exact_loss))


def test_bfloat16_output_is_handled_in_float32():
    out, noisy = _random_case()
    low = out.bfloat16()
    expected = posterior_mean(low.float(), noisy, SIGMA)
    got = posterior_mean(low, noisy, SIGMA)
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert loglike_loss(low, noisy, SIGMA).dtype == torch.float32


def _prior_covariance(out: torch.Tensor) -> torch.Tensor:
    """A^T A per pixel (..., 3, 3) of the official upper-left factor layout, built entry by entry."""
    v = out[:, :, 3:9].movedim(2, -1)
    factor = v.new_zeros(*v.shape[:-1], 3, 3)
    for k, (row, col) in enumerate([(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)]):
        factor[..., row, col] = v[..., k]
    return factor.transpose(-1, -2) @ factor


def test_colour_matrix_prior_is_sparse_and_has_the_scaled_covariance():
    """scaled_prior(out, S): same mean, a factor in the official layout whose A'^T A' = S^T A^T A S,
    also where factor entries are exactly zero; S = k I equals scaling the factor by k."""
    out, _ = _random_case(scale=1.0)
    out = out.double()
    out[0, 0, 3:9, 0, 0] = 0.0          # a zero factor
    out[0, 0, 5, 1, 1] = 0.0            # zero pairs in the rotations
    out[0, 0, 8, 2, 2] = 0.0
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    matrix = q @ torch.diag(torch.tensor([0.2, 0.9, 1.7], dtype=torch.float64)) @ q.T
    scaled = scaled_prior(out, matrix)
    assert torch.equal(scaled[:, :, :3], out[:, :, :3])
    expected = matrix.T @ _prior_covariance(out) @ matrix
    assert (_prior_covariance(scaled) - expected).abs().max().item() < 1e-12
    assert torch.equal(scaled_prior(out, 0.5)[:, :, 3:], 0.5 * out[:, :, 3:])
    assert torch.allclose(_prior_covariance(scaled_prior(out, 0.5 * torch.eye(3, dtype=torch.float64))),
                          _prior_covariance(scaled_prior(out, 0.5)), atol=1e-14)
    noisy = torch.rand(out.shape[0], out.shape[1], 3, *out.shape[3:], dtype=torch.float64)
    # The posterior of the sparse factor is the one of the dense covariance S^T A^T A S.
    residual = (out[:, :, :3] - noisy).movedim(2, -1).unsqueeze(-1)
    s = SIGMA ** 2 + 1e-5
    system = expected + (s + 1e-5) * torch.eye(3, dtype=torch.float64)
    by_hand = noisy + s * torch.linalg.solve(system, residual).squeeze(-1).movedim(-1, 2)
    assert (posterior_mean(scaled, noisy, SIGMA) - by_hand).abs().max().item() < 1e-8
    # The block-by-block calibration inside the loss and the posterior is the same computation.
    assert torch.equal(posterior_mean(out, noisy, SIGMA, prior_scale=matrix), posterior_mean(scaled, noisy, SIGMA))
    assert torch.equal(loglike_loss(out, noisy, SIGMA, prior_scale=matrix), loglike_loss(scaled, noisy, SIGMA))


def test_colour_matrix_gradient_is_finite_on_zero_factors():
    """The calibration fits S by autograd through the rotations: zero pairs must not give NaN."""
    out, noisy = _random_case()
    out[0, 0, 3:9, 0, 0] = 0.0
    matrix = torch.eye(3, dtype=torch.float64).requires_grad_(True)
    loglike_loss(out.double(), noisy.double(), SIGMA, prior_scale=matrix).backward()
    assert torch.isfinite(matrix.grad).all() and matrix.grad.abs().sum() > 0
