"""Gaussian algebra speed: utils/gaussian.py vs the official per-pixel torch.inverse / torch.det.

On a 960x540x8 clip (CPU by default) it prints min / median / max seconds of the log-likelihood
loss and of the posterior mean for both, the median ratio, and the largest absolute difference.
The reference functions here (also used by tests/utils/test_gaussian.py) follow the official
code: build the 3x3 factor per pixel, then batched torch.inverse / torch.det.

    python -m benchmarks.gaussian_algebra [--repeats 3] [--frames 8] [--height 540] [--width 960]
"""
from __future__ import annotations

import argparse
import statistics

import torch

from benchmarks.timing import summary, time_calls
from utils.gaussian import EPS, loglike_loss, posterior_mean
from utils.noise import unit_sigma


def covariance_factor(out: torch.Tensor) -> torch.Tensor:
    """(N,T,9,H,W) -> A (N,T,H,W,3,3) in the official upper-left layout."""
    v = out[:, :, 3:9].movedim(2, -1)
    zero = torch.zeros_like(v[..., 0])
    rows = [torch.stack([v[..., 0], v[..., 1], v[..., 2]], -1),
            torch.stack([v[..., 3], v[..., 4], zero], -1),
            torch.stack([v[..., 5], zero, zero], -1)]
    return torch.stack(rows, -2)


def _sigma_squared(sigma, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(sigma, dtype=dtype).reshape(-1, 1, 1, 1, 1, 1) ** 2


def reference_loss(out: torch.Tensor, noisy: torch.Tensor, sigma, dtype=torch.float32) -> torch.Tensor:
    """Official loss: Sigma = A^T A + (sigma^2 + 1e-5) I; mean of r^T Sigma^-1 r / 2 + log det / 2."""
    out, noisy = out.to(dtype), noisy.to(dtype)
    a = covariance_factor(out)
    eye = torch.eye(3, dtype=dtype, device=out.device)
    cov = a.transpose(-1, -2) @ a + (_sigma_squared(sigma, dtype) + EPS) * eye
    r = (noisy - out[:, :, :3]).movedim(2, -1).unsqueeze(-1)
    maha = (r.transpose(-1, -2) @ torch.inverse(cov) @ r)[..., 0, 0]
    return (0.5 * maha + 0.5 * torch.log(torch.det(cov))).mean()


def reference_posterior(out: torch.Tensor, noisy: torch.Tensor, sigma, dtype=torch.float32) -> torch.Tensor:
    """Official post-processing: P = (A^T A + 1e-5 I)^-1, x = (P + I/s)^-1 (P mu + y/s)."""
    out, noisy = out.to(dtype), noisy.to(dtype)
    a = covariance_factor(out)
    eye = torch.eye(3, dtype=dtype, device=out.device)
    prec = torch.inverse(a.transpose(-1, -2) @ a + EPS * eye)
    w = 1.0 / (_sigma_squared(sigma, dtype) + EPS)
    mu = out[:, :, :3].movedim(2, -1).unsqueeze(-1)
    y = noisy.movedim(2, -1).unsqueeze(-1)
    x = torch.inverse(prec + w * eye) @ (prec @ mu + w * y)
    return x[..., 0].movedim(-1, 2)


def well_conditioned_output(n: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A network-like output whose factor A is invertible (det A = -v2 v4 v5 kept away from 0),
    so that the float32 reference is defined everywhere."""
    g = torch.Generator().manual_seed(seed)
    out = torch.rand(n, t, 9, h, w, generator=g)
    out[:, :, 3:] = (torch.rand(n, t, 6, h, w, generator=g) - 0.5) * 0.2
    for k in (5, 7, 8):  # v2, v4, v5
        sign = torch.randint(0, 2, (n, t, h, w), generator=g) * 2 - 1
        out[:, :, k] = sign * (0.05 + 0.1 * torch.rand(n, t, h, w, generator=g))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=540)
    parser.add_argument("--width", type=int, default=960)
    args = parser.parse_args(argv)

    sigma = unit_sigma(30)
    out = well_conditioned_output(1, args.frames, args.height, args.width)
    noisy = out[:, :, :3] + sigma * torch.randn(1, args.frames, 3, args.height, args.width)
    print(f"Gaussian algebra on 1x{args.frames}x{args.width}x{args.height}, CPU, "
          f"{torch.get_num_threads()} threads, {args.repeats} repeats, torch {torch.__version__}")
    with torch.inference_mode():
        for name, ours_fn, ref_fn in (("loss", loglike_loss, reference_loss),
                                      ("posterior mean", posterior_mean, reference_posterior)):
            ours_t = time_calls(lambda: ours_fn(out, noisy, sigma), args.repeats)
            ref_t = time_calls(lambda: ref_fn(out, noisy, sigma), args.repeats)
            diff = (ours_fn(out, noisy, sigma).double() - ref_fn(out, noisy, sigma).double()).abs().max()
            exact = (ours_fn(out, noisy, sigma).double()
                     - ref_fn(out, noisy, sigma, dtype=torch.float64)).abs().max()
            print(summary(f"{name}: ours (closed-form LDL)", ours_t))
            print(summary(f"{name}: per-pixel inverse/det (f32)", ref_t))
            print(f"  speed-up (median) {statistics.median(ref_t) / statistics.median(ours_t):.1f}x; "
                  f"max |ours - f32 reference| {diff.item():.2e}; "
                  f"max |ours - f64 reference| {exact.item():.2e}")
    return 0


if __name__ == "__main__":
    from utils.errors import run_cli
    run_cli(main)
