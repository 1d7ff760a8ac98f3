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

Both go through one closed-form 3x3 LDL^T factorisation whose pivots are ratios of determinants
written as sums of squares (Cauchy-Binet on the sparse A), so nothing cancels and every pivot is
>= the diagonal shift. It runs in float32 on cache-sized blocks; pixels whose values could overflow
float32 (|value| > 1e3) are recomputed in float64, so any finite network output gives finite
results. No per-pixel LAPACK call, and the algebra never runs in half precision.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import torch

# The official epsilons: added to sigma^2 in the likelihood, and to A^T A in the posterior.
EPS = 1e-5
# Above this magnitude a pixel's products (up to degree 6) could overflow float32: use float64.
_FLOAT32_SAFE = 1e3
# Pixels per block. On the CPU each per-channel op of a block stays below PyTorch's parallel
# grain (32768 elements): the ~100 small ops then run without thread barriers (which cost
# milliseconds each on a busy machine) and their temporaries stay in cache. Large on GPUs.
_BLOCK_PIXELS = {"cpu": (1 << 15) - 1}
_DEFAULT_BLOCK_PIXELS = 1 << 24

Channels = list[torch.Tensor]
# A prior calibration: a number k or a 3x3 colour matrix S (`scaled_prior`).
PriorScale = float | torch.Tensor


class _LDL3:
    """Sigma = L D L^T (unit lower L, pivots D) for Sigma = A^T A + shift*I, official sparse A.

    LDL^T rather than Cholesky: no square roots (slow, and multi-threaded even on small inputs).
    The pivots are ratios of leading minors, each a sum of non-negative terms.
    """

    def __init__(self, v: Channels, shift: float) -> None:
        a, b, c, d, e, f = v
        bb, cc, ee, ff = b * b, c * c, e * e, f * f
        s00 = a * a + d * d + ff
        ae_bd = a * e - b * d
        bb_ee = bb + ee
        # Leading 2x2 minor of A^T A (Cauchy-Binet): a sum of squares.
        minor01 = ae_bd * ae_bd + ff * bb_ee
        # Sum of all principal 2x2 minors and the determinant of A^T A (det A = -c e f).
        minors_all = minor01 + cc * (d * d + ee + ff)
        cef = c * e * f
        s2 = shift * shift
        self.p0 = s00 + shift
        det2 = minor01 + shift * (s00 + bb_ee) + s2
        self.det3 = cef * cef + shift * minors_all + s2 * (s00 + bb_ee + cc) + s2 * shift
        self.p1 = det2 / self.p0
        self.p2 = self.det3 / det2
        self.l10 = (a * b + d * e) / self.p0
        self.l20 = a * c / self.p0
        # (S12 - S02 S01 / p0) / p1, simplified with the zeros of A.
        self.l21 = c * (b * (ff + shift) - d * ae_bd) / det2

    def forward_solve(self, r: Channels) -> Channels:
        """w = L^-1 r."""
        w1 = r[1] - self.l10 * r[0]
        return [r[0], w1, r[2] - self.l20 * r[0] - self.l21 * w1]

    def mahalanobis(self, r: Channels) -> torch.Tensor:
        """r^T Sigma^-1 r."""
        w = self.forward_solve(r)
        return w[0] * w[0] / self.p0 + w[1] * w[1] / self.p1 + w[2] * w[2] / self.p2

    def solve(self, r: Channels) -> Channels:
        """Sigma^-1 r."""
        w = self.forward_solve(r)
        x2 = w[2] / self.p2
        x1 = w[1] / self.p1 - self.l21 * x2
        x0 = w[0] / self.p0 - self.l10 * x1 - self.l20 * x2
        return [x0, x1, x2]


def _rotate_rows(rows: list[Channels], keep: int, zero: int, column: int) -> None:
    """One Givens rotation of rows `keep` and `zero` that zeroes rows[zero][column] (in place).

    A rotation on the left keeps B^T B; hypot keeps it free of overflow and cancellation."""
    a, b = rows[keep][column], rows[zero][column]
    # A pair of zeros is left as it is (cos 1, sin 0), with finite gradients.
    a = torch.where((a == 0) & (b == 0), torch.ones_like(a), a)
    radius = torch.hypot(a, b)
    cos, sin = a / radius, b / radius
    top, bottom = rows[keep], rows[zero]
    rows[keep] = [cos * x + sin * y for x, y in zip(top, bottom)]
    rows[zero] = [cos * y - sin * x for x, y in zip(top, bottom)]


def _prior_factor(v: Channels, scale: PriorScale) -> Channels:
    """The six factor entries of the calibrated prior S^T A^T A S (see `scaled_prior`)."""
    if not isinstance(scale, torch.Tensor):
        return v if scale == 1.0 else [entry * scale for entry in v]
    if scale.shape != (3, 3):
        raise ValueError(f"expected a number or a 3x3 colour matrix, got shape {tuple(scale.shape)}")
    matrix = scale.to(v[0])
    sparse = [[v[0], v[1], v[2]], [v[3], v[4], None], [v[5], None, None]]
    rows = [[sum(entry * matrix[k, j] for k, entry in enumerate(row) if entry is not None) for j in range(3)]
            for row in sparse]
    _rotate_rows(rows, 0, 2, 2)
    _rotate_rows(rows, 0, 1, 2)
    _rotate_rows(rows, 1, 2, 1)
    return [rows[0][0], rows[0][1], rows[0][2], rows[1][0], rows[1][1], rows[2][0]]


def _nll_terms(out: torch.Tensor, noisy: torch.Tensor, variance: float, scale: PriorScale = 1.0) -> Channels:
    """Per pixel [r^T Sigma^-1 r, det Sigma]; channels on dim 1 of `out` (9) and `noisy` (3)."""
    ldl = _LDL3(_prior_factor([out[:, k] for k in range(3, 9)], scale), variance + EPS)
    return [ldl.mahalanobis([noisy[:, k] - out[:, k] for k in range(3)]), ldl.det3]


def _posterior(out: torch.Tensor, noisy: torch.Tensor, variance: float, scale: PriorScale = 1.0) -> Channels:
    """Per-pixel posterior mean [x0, x1, x2]: y + s (A^T A + (s + 1e-5) I)^-1 (mu - y)."""
    s = variance + EPS
    ldl = _LDL3(_prior_factor([out[:, k] for k in range(3, 9)], scale), s + EPS)
    y = [noisy[:, k] for k in range(3)]
    step = ldl.solve([out[:, k] - y[k] for k in range(3)])
    return [y[k] + s * step[k] for k in range(3)]


def _in_float32(fn: Callable[[torch.Tensor, torch.Tensor, float], Channels], out: torch.Tensor,
                noisy: torch.Tensor, variance: float, check: bool) -> Channels:
    """`fn` in float32 (float64 for float64 input); with `check`, pixels too large for float32
    are redone in float64 and scattered back. Channels on dim 1."""
    if out.dtype == torch.float64:
        return fn(out, noisy.double(), variance)
    out, noisy = out.float(), noisy.float()
    large = torch.maximum(out.abs().amax(1), noisy.abs().amax(1)) > _FLOAT32_SAFE if check else None
    if large is None or not bool(large.any()):
        return fn(out, noisy, variance)
    keep = ~large.unsqueeze(1)
    result = fn(out * keep, noisy * keep, variance)  # large pixels zeroed: finite, replaced below
    picked = fn(out.movedim(1, -1)[large].double(), noisy.movedim(1, -1)[large].double(), variance)
    # float64 results (a determinant can exceed the float32 range) scattered into float64 copies.
    return [r.double().masked_scatter(large, p) for r, p in zip(result, picked)]


def _needs_check(out: torch.Tensor, noisy: torch.Tensor) -> bool:
    """Whether any value is large enough for float32 to overflow (one pass, no temporaries)."""
    return any(max(-lo.item(), hi.item()) > _FLOAT32_SAFE
               for lo, hi in (torch.aminmax(out), torch.aminmax(noisy)))


def _variances(sigma: float | torch.Tensor, batch: int) -> list[float]:
    """sigma (float, 0-d, (N,) or any shape with N or 1 values) -> sigma^2 per sample."""
    values = torch.as_tensor(sigma).detach().reshape(-1).double().cpu().tolist()
    if len(values) not in (1, batch):
        raise ValueError(f"sigma has {len(values)} values for a batch of {batch}")
    return [v * v for v in (values * batch if len(values) == 1 else values)]


def _blocks(shape: torch.Size, block_pixels: int) -> Iterator[tuple[int, slice, slice]]:
    """(sample, frames, rows) blocks of about `block_pixels` pixels covering (N,T,C,H,W)."""
    n, t, _, h, w = shape
    frames = max(1, block_pixels // (h * w))
    rows = h if frames > 1 else max(1, min(h, block_pixels // w))
    for i in range(n):
        for f0 in range(0, t, frames):
            for r0 in range(0, h, rows):
                yield i, slice(f0, min(t, f0 + frames)), slice(r0, min(h, r0 + rows))


def _check_shapes(out: torch.Tensor, noisy: torch.Tensor) -> None:
    if out.dim() != 5 or out.shape[2] != 9:
        raise ValueError(f"expected a network output (N,T,9,H,W), got {tuple(out.shape)}")
    expected = (*out.shape[:2], 3, *out.shape[3:])
    if tuple(noisy.shape) != expected:
        raise ValueError(f"noisy input {tuple(noisy.shape)} does not match output {tuple(out.shape)}")


def _block_pixels(device: torch.device) -> int:
    return _BLOCK_PIXELS.get(device.type, _DEFAULT_BLOCK_PIXELS)


def loglike_loss(out: torch.Tensor, noisy: torch.Tensor, sigma: float | torch.Tensor,
                 prior_scale: PriorScale = 1.0) -> torch.Tensor:
    """Gaussian negative log-likelihood of `noisy` (N,T,3,H,W) under `out` (N,T,9,H,W).

    sigma is the noise std on the [0,1] scale: a float or one value per sample. `prior_scale`
    calibrates the prior (`scaled_prior`; 1 = the model's own). Returns a scalar (float32, or
    float64 for float64 input), differentiable with respect to `out` and a matrix `prior_scale`.
    """
    _check_shapes(out, noisy)
    variances = _variances(sigma, out.shape[0])
    check = _needs_check(out, noisy)
    mahalanobis, determinants = 0.0, []
    with torch.autocast(out.device.type, enabled=False):
        for i, f, r in _blocks(out.shape, _block_pixels(out.device)):
            maha, det = _in_float32(partial(_nll_terms, scale=prior_scale), out[i, f, :, r], noisy[i, f, :, r],
                                    variances[i], check)
            mahalanobis = mahalanobis + maha.sum()
            determinants.append(det.reshape(-1))
        # One logarithm over the whole clip (a per-block log is slow and multi-threaded).
        log_det = torch.cat(determinants).log().sum()
    count = out.numel() // out.shape[2]
    loss = (0.5 * mahalanobis + 0.5 * log_det) / count
    return loss.to(torch.float64 if out.dtype == torch.float64 else torch.float32)


def posterior_mean(out: torch.Tensor, noisy: torch.Tensor, sigma: float | torch.Tensor,
                   prior_scale: PriorScale = 1.0) -> torch.Tensor:
    """Official posterior-mean post-processing: (N,T,9,H,W) + noisy (N,T,3,H,W) -> (N,T,3,H,W).

    Combines the blind-spot prior N(mu, A^T A) with the noisy pixel; not clamped. Returned in
    float32 (float64 for float64 input). `prior_scale` calibrates the prior, block by block
    (`scaled_prior`; 1 = official).
    """
    _check_shapes(out, noisy)
    variances = _variances(sigma, out.shape[0])
    dtype = torch.float64 if out.dtype == torch.float64 else torch.float32
    result = torch.empty(noisy.shape, dtype=dtype, device=out.device)
    check = _needs_check(out, noisy)
    with torch.autocast(out.device.type, enabled=False):
        for i, f, r in _blocks(out.shape, _block_pixels(out.device)):
            channels = _in_float32(partial(_posterior, scale=prior_scale), out[i, f, :, r], noisy[i, f, :, r],
                                   variances[i], check)
            for k, value in enumerate(channels):
                result[i, f, k, r] = value
    return result


def scaled_prior(out: torch.Tensor, scale: PriorScale) -> torch.Tensor:
    """A network output (N,T,9,H,W) whose prior covariance A^T A becomes S^T A^T A S, the mean
    unchanged: engine/inference/prior_scale.py calibrates S on the video itself.

    `scale` is a number k (S = k I: the factor times k) or a 3x3 matrix S. For a matrix the
    dense factor A S is brought back to the official sparse layout by three Givens rotations on
    the left (same covariance), so the closed-form loss and posterior apply unchanged; they take
    `prior_scale` themselves and calibrate block by block, without this whole-clip copy.
    """
    factor = _prior_factor([out[:, :, k] for k in range(3, 9)], scale)
    return torch.cat([out[:, :, :3], torch.stack(factor, dim=2)], dim=2)
