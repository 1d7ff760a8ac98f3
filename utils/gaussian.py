"""STBN's Gaussian algebra: the self-supervised log-likelihood loss and the posterior mean.

The network predicts, per pixel, a mean mu = out[0:3] and a 3x3 factor A of the prior covariance,
filled in the official "upper-left" layout (row i holds columns 0..2-i):

    A = [[v0, v1, v2],
         [v3, v4, 0 ],
         [v5, 0,  0 ]]      with v = out[3:9].

Training (Laine et al. 2019 / UDVD): the noisy pixel y ~ N(mu, Sigma) with
Sigma = A^T A + (sigma^2 + 1e-5) I, loss = mean over N,T,H,W of 1/2 r^T Sigma^-1 r + 1/2 log det Sigma,
r = y - mu.

Inference: the official posterior mean x = (P + I/s)^-1 (P mu + y/s), P = (A^T A + 1e-5 I)^-1,
s = sigma^2 + 1e-5, inverts a matrix that can be singular in float32. Multiplying through gives
the equivalent x = y + s (A^T A + (s + 1e-5) I)^-1 (mu - y), a solve with a well-conditioned SPD
matrix (its eigenvalues are >= s + 1e-5).

Both go through one closed-form 3x3 Cholesky in float64 whose pivots are ratios of determinants
written as sums of squares (Cauchy-Binet on the sparse A), so nothing cancels and every pivot is
>= the diagonal shift: finite for any finite network output, and no per-pixel LAPACK call.
"""
from __future__ import annotations

import torch

# The official epsilons: added to sigma^2 in the likelihood, and to A^T A in the posterior.
EPS = 1e-5
# Pixels per float64 block in `posterior_mean` (about 30 temporaries of 8 bytes each).
_POSTERIOR_BLOCK = 1 << 21


def _per_sample_variance(sigma: float | torch.Tensor, batch: int) -> torch.Tensor:
    """sigma (float, 0-d, (N,) or any shape with N or 1 elements) -> sigma^2 as (N,1,1,1) float64."""
    sig = torch.as_tensor(sigma, dtype=torch.float64).detach().reshape(-1)
    if sig.numel() not in (1, batch):
        raise ValueError(f"sigma has {sig.numel()} values for a batch of {batch}")
    return (sig * sig).reshape(-1, 1, 1, 1).expand(batch, 1, 1, 1)


class _Cholesky3:
    """Lower Cholesky factor of A^T A + shift*I for the official sparse A, as float64 arrays.

    Built from the six factor entries (each (N,T,H,W), float64) and a broadcastable shift > 0.
    """

    def __init__(self, v: list[torch.Tensor], shift: torch.Tensor) -> None:
        a, b, c, d, e, f = v
        aa, bb, cc, dd, ee, ff = a * a, b * b, c * c, d * d, e * e, f * f
        s00 = aa + dd + ff
        s01 = a * b + d * e
        ae_bd = a * e - b * d
        # Leading 2x2 minor of A^T A (Cauchy-Binet): a sum of squares.
        minor01 = ae_bd * ae_bd + ff * (bb + ee)
        # Sum of the principal 2x2 minors and the determinant of A^T A (det A = -c e f).
        minors_all = minor01 + cc * (dd + ee + ff)
        det_ata = cc * ee * ff
        trace = s00 + bb + ee + cc
        p0 = s00 + shift
        det2 = minor01 + shift * (s00 + bb + ee) + shift * shift
        det3 = det_ata + shift * minors_all + shift * shift * trace + shift * shift * shift
        self.l00 = p0.sqrt()
        self.l11 = (det2 / p0).sqrt()
        self.l22 = (det3 / det2).sqrt()
        self.l10 = s01 / self.l00
        self.l20 = a * c / self.l00
        # (S12 - S02 S01 / p0) / l11, simplified with the zeros of A.
        self.l21 = c * (d * (b * d - a * e) + b * (ff + shift)) / (p0 * self.l11)
        self.log_det = det3.log()

    def forward_solve(self, r: list[torch.Tensor]) -> list[torch.Tensor]:
        """z = L^-1 r."""
        z0 = r[0] / self.l00
        z1 = (r[1] - self.l10 * z0) / self.l11
        z2 = (r[2] - self.l20 * z0 - self.l21 * z1) / self.l22
        return [z0, z1, z2]

    def solve(self, r: list[torch.Tensor]) -> list[torch.Tensor]:
        """x = (L L^T)^-1 r."""
        z0, z1, z2 = self.forward_solve(r)
        x2 = z2 / self.l22
        x1 = (z1 - self.l21 * x2) / self.l11
        x0 = (z0 - self.l10 * x1 - self.l20 * x2) / self.l00
        return [x0, x1, x2]


def _check_shapes(out: torch.Tensor, noisy: torch.Tensor) -> None:
    if out.dim() != 5 or out.shape[2] != 9:
        raise ValueError(f"expected a network output (N,T,9,H,W), got {tuple(out.shape)}")
    expected = (*out.shape[:2], 3, *out.shape[3:])
    if tuple(noisy.shape) != expected:
        raise ValueError(f"noisy input {tuple(noisy.shape)} does not match output {tuple(out.shape)}")


def _channels(x: torch.Tensor, start: int, stop: int) -> list[torch.Tensor]:
    return [x[:, :, k].double() for k in range(start, stop)]


def loglike_loss(out: torch.Tensor, noisy: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Gaussian negative log-likelihood of `noisy` (N,T,3,H,W) under `out` (N,T,9,H,W).

    sigma is the noise std on the [0,1] scale: a float or one value per sample. Returns a scalar
    in the dtype of `out` (float32 under autocast too); differentiable with respect to `out`.
    """
    _check_shapes(out, noisy)
    shift = _per_sample_variance(sigma, out.shape[0]).to(out.device) + EPS
    chol = _Cholesky3(_channels(out, 3, 9), shift)
    mu, y = _channels(out, 0, 3), _channels(noisy, 0, 3)
    z = chol.forward_solve([yk - mk for yk, mk in zip(y, mu)])
    nll = 0.5 * (z[0] * z[0] + z[1] * z[1] + z[2] * z[2]) + 0.5 * chol.log_det
    dtype = out.dtype if out.dtype in (torch.float32, torch.float64) else torch.float32
    return nll.mean().to(dtype)


def _posterior_block(out: torch.Tensor, noisy: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """posterior_mean on one (N,T',...) block, variance (N,1,1,1) float64."""
    s = variance + EPS
    chol = _Cholesky3(_channels(out, 3, 9), s + EPS)
    mu, y = _channels(out, 0, 3), _channels(noisy, 0, 3)
    step = chol.solve([mk - yk for mk, yk in zip(mu, y)])
    return torch.stack([yk + s * dk for yk, dk in zip(y, step)], dim=2)


def posterior_mean(out: torch.Tensor, noisy: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Official posterior-mean post-processing: (N,T,9,H,W) + noisy (N,T,3,H,W) -> (N,T,3,H,W).

    Combines the blind-spot prior N(mu, A^T A) with the noisy pixel; not clamped. Computed in
    float64 blocks of frames to bound memory; returned in float32 (or float64 for float64 input).
    """
    _check_shapes(out, noisy)
    variance = _per_sample_variance(sigma, out.shape[0]).to(out.device)
    n, t, _, h, w = out.shape
    frames = max(1, _POSTERIOR_BLOCK // max(1, n * h * w))
    dtype = torch.float64 if out.dtype == torch.float64 else torch.float32
    result = torch.empty(n, t, 3, h, w, dtype=dtype, device=out.device)
    for start in range(0, t, frames):
        stop = min(t, start + frames)
        result[:, start:stop] = _posterior_block(out[:, start:stop], noisy[:, start:stop], variance)
    return result
