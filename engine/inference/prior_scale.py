"""Self-supervised calibration of the blind-spot prior's covariance on the very video being denoised.

The posterior mean weighs the blind-spot prior N(mu, A^T A) against the noisy pixel by their
spreads. A briefly trained model (the default one) misjudges them on new videos, and not alike in
every colour direction: on `bikes` at sigma 25 its prior mean scores 29.3 dB and its posterior
26.9 dB, the chroma spread being far too wide. The calibration replaces the prior covariance by
S^T A^T A S with one symmetric positive-definite 3x3 colour matrix S (six numbers), chosen to
maximise the Gaussian likelihood of the noisy video itself (the network's own training loss,
fitted by empirical Bayes: no clean data). A single number k (S = k I) is the scalar special case;
S = I is the official posterior.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize
from torch import nn

from engine.inference.sequence import has_srgb_gaussian_head, head_output
from utils.errors import UserError
from utils.gaussian import PriorScale, loglike_loss

AUTO = "auto"
# Bounds on the eigenvalues of S (how far the fit may shrink or widen the prior's spread).
SCALE_BOUNDS = (0.05, 4.0)
# The fit runs the model once on the centre of the first frames: enough pixels for six numbers.
FIT_FRAMES = 8
FIT_SIDE = 256
_UPPER = torch.triu_indices(3, 3)


class PriorFitFailed(UserError):
    """The colour matrix could not be fitted (a non-finite likelihood): nothing was fitted."""


def parse_prior_scale(text: str) -> PriorScale | None:
    """A --prior_scale value: a positive number k, nine comma-separated numbers (a symmetric
    positive-definite S, row by row, as `denoise.py` prints a fitted one), or 'auto' (None)."""
    if text == AUTO:
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    low, high = SCALE_BOUNDS
    if len(values) == 1 and math.isfinite(values[0]) and values[0] > 0:
        if not low <= values[0] <= high:
            raise UserError(f"--prior_scale {text}: a scale must lie in [{low:g}, {high:g}] (the range the fit "
                            "searches; 1 = the model's own posterior)")
        return values[0]
    if len(values) == 9 and all(math.isfinite(value) for value in values):
        matrix = torch.tensor(values, dtype=torch.float64).view(3, 3)
        if torch.allclose(matrix, matrix.T, atol=1e-6) and bool(torch.linalg.eigvalsh(matrix).min() > 0):
            eigenvalues = torch.linalg.eigvalsh(matrix)
            if eigenvalues.min() < low * (1 - 1e-3) or eigenvalues.max() > high * (1 + 1e-3):
                raise UserError(f"--prior_scale: the matrix's scales (eigenvalues {eigenvalues.min():.3g} .. "
                                f"{eigenvalues.max():.3g}) must lie in [{low:g}, {high:g}]")
            return matrix
    raise UserError(f"--prior_scale: expected a positive number, nine numbers of a symmetric "
                    f"positive-definite 3x3 matrix (comma-separated) or auto, got '{text}'")


def format_prior_scale(scale: PriorScale) -> str:
    """The text `parse_prior_scale` reads back: a number, or S row by row."""
    if isinstance(scale, torch.Tensor):
        return ",".join(f"{value:.4f}" for value in scale.flatten().tolist())
    return f"{scale:.4f}"


def _colour_matrix(params: torch.Tensor) -> torch.Tensor:
    """S = exp(M) for the symmetric M whose upper triangle is `params` (6): always SPD, I at 0."""
    upper = torch.zeros(3, 3, dtype=params.dtype).index_put((_UPPER[0], _UPPER[1]), params)
    return torch.linalg.matrix_exp(upper + upper.triu(1).T)


def _bounded(matrix: torch.Tensor) -> torch.Tensor:
    """`matrix` with its eigenvalues clamped to SCALE_BOUNDS, exactly symmetric (so that its
    printed entries read back as a symmetric matrix)."""
    values, vectors = torch.linalg.eigh(matrix)
    bounded = vectors @ torch.diag(values.clamp(*SCALE_BOUNDS)) @ vectors.T
    return (bounded + bounded.T) / 2


def fit_prior_scale_to_output(out: torch.Tensor, noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    """The SPD colour matrix S (3x3, float64) that minimises the Gaussian NLL of `noisy` under
    `scaled_prior(out, S)`: L-BFGS on log S from S = I, gradients by autograd."""
    out = out.detach()

    def nll_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        tensor = torch.tensor(params, dtype=torch.float64, requires_grad=True)
        loss = loglike_loss(out, noisy, sigma, _colour_matrix(tensor))
        loss.backward()
        return float(loss.detach()), tensor.grad.numpy().copy()

    start, _ = nll_and_gradient(np.zeros(6))
    if not math.isfinite(start):
        raise PriorFitFailed("cannot fit the prior's colour matrix: the likelihood of the input is not finite "
                             "under the model's output")
    result = minimize(nll_and_gradient, np.zeros(6), jac=True, method="L-BFGS-B",
                      options={"maxiter": 100, "gtol": 1e-6})
    if not (math.isfinite(result.fun) and np.isfinite(result.x).all()):
        raise PriorFitFailed(f"the fit of the prior's colour matrix failed ({result.message})")
    return _bounded(_colour_matrix(torch.from_numpy(result.x)))


def fit_prior_scale(model: nn.Module, seqn: torch.Tensor, sigma: float,
                    frames: int = FIT_FRAMES, side: int = FIT_SIDE) -> torch.Tensor:
    """`fit_prior_scale_to_output` for the model's output on the centre side x side window of the
    first `frames` noisy frames (T,3,H,W) on [0, 1]; sigma on the [0, 1] scale."""
    if not has_srgb_gaussian_head(model):
        raise UserError("--prior_scale auto needs an sRGB model with a covariance head (mean + 6 factor entries)")
    height, width = seqn.shape[-2:]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    model.eval()
    with torch.no_grad():
        out, noisy = head_output(model, seqn[:frames, :, top:top + side, left:left + side], sigma)
    return fit_prior_scale_to_output(out.float(), noisy, float(sigma))
