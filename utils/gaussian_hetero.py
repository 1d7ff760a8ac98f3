"""STBN's Gaussian likelihood and posterior for any channel count and per-pixel noise variance.

The raw model's `--raw_loss gaussian` (our extension; the official raw model has a mean-only head):
a head of C + C(C+1)/2 channels gives the prior mean mu and a triangular factor A in the official
"upper-left" layout (row i holds columns 0..C-1-i, as utils/gaussian.py for C = 3), and the noise
is heteroscedastic, a diagonal N = diag(n) per pixel (Poisson-Gaussian raw noise: n = a*x + b).

    loss      = mean over pixels of 1/2 r^T Sigma^-1 r + 1/2 log det Sigma,
                Sigma = A^T A + N + 1e-5 I,  r = y - mu
    posterior = y + N (A^T A + N + 2e-5 I)^-1 (mu - y)

which are the sRGB formulas with sigma^2 I replaced by N (same epsilons: for C = 3 and a constant
n they equal `loglike_loss` and `posterior_mean`, tested). The 3x3 closed form stays the sRGB
path; here per-pixel C x C Cholesky factorisations (torch.linalg) do the algebra in float32.
"""
from __future__ import annotations

import torch

from utils.gaussian import EPS


def factor_entries(channels: int) -> list[tuple[int, int]]:
    """(row, column) of each covariance-factor output, in the head's order."""
    return [(i, j) for i in range(channels) for j in range(channels - i)]


def head_channels(channels: int) -> int:
    """Outputs of a mean + covariance-factor head for `channels` image channels (9 for RGB, 14 for raw)."""
    return channels + len(factor_entries(channels))


def _prior_and_residual(out: torch.Tensor, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A^T A per pixel (..., C, C), mu - y per pixel (..., C)); pixels last-but-channel layout."""
    channels = noisy.shape[2]
    if out.dim() != 5 or out.shape[2] != head_channels(channels) or out.shape[:2] != noisy.shape[:2]:
        raise ValueError(f"expected a head output (N,T,{head_channels(channels)},H,W) for noisy "
                         f"{tuple(noisy.shape)}, got {tuple(out.shape)}")
    pixels = out.float().movedim(2, -1)                      # (N,T,H,W,K)
    factor = pixels.new_zeros(*pixels.shape[:-1], channels, channels)
    for k, (i, j) in enumerate(factor_entries(channels)):
        factor[..., i, j] = pixels[..., channels + k]
    prior = factor.transpose(-1, -2) @ factor
    return prior, pixels[..., :channels] - noisy.float().movedim(2, -1)


def hetero_loglike_loss(out: torch.Tensor, noisy: torch.Tensor, noise_variance: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of `noisy` (N,T,C,H,W) under `out` with per-pixel noise variances
    `noise_variance` (broadcastable to noisy); a float32 scalar, differentiable in `out`."""
    with torch.autocast(out.device.type, enabled=False):
        prior, residual = _prior_and_residual(out, noisy)
        variance = torch.broadcast_to(noise_variance.float(), noisy.shape).movedim(2, -1)
        sigma = prior + torch.diag_embed(variance + EPS)
        chol = torch.linalg.cholesky(sigma)
        whitened = torch.linalg.solve_triangular(chol, residual.unsqueeze(-1), upper=False)
        mahalanobis = whitened.square().sum(dim=(-2, -1))
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        return (0.5 * mahalanobis + 0.5 * log_det).mean()


def hetero_posterior_mean(out: torch.Tensor, noisy: torch.Tensor, noise_variance: torch.Tensor) -> torch.Tensor:
    """Posterior mean (N,T,C,H,W) of the clean pixel given the prior `out` and the noisy pixel; not clamped."""
    with torch.autocast(out.device.type, enabled=False):
        prior, residual = _prior_and_residual(out, noisy)
        variance = torch.broadcast_to(noise_variance.float(), noisy.shape).movedim(2, -1) + EPS
        system = prior + torch.diag_embed(variance + EPS)
        step = torch.linalg.solve(system, residual.unsqueeze(-1)).squeeze(-1)
        return (noisy.float().movedim(2, -1) + variance * step).movedim(-1, 2)
