"""Self-supervised calibration of the blind-spot prior's spread on the very video being denoised.

The posterior mean weighs the blind-spot prior N(mu, A^T A) against the noisy pixel by their
spreads. A briefly trained model (the default one) predicts spreads that are too wide on many
videos, and the posterior then keeps noise that its prior mean had already removed: on `bikes`
at sigma 25 the default model's prior mean scores 29.3 dB and its posterior 26.9 dB. Scaling the
predicted factor A by one number k (the prior covariance by k^2), chosen to maximise the Gaussian
likelihood of the noisy video itself (the network's own training loss, one scalar fitted by
empirical Bayes), needs no clean data; on the built-in clips it lands within one step of a 0.25 ..
1.4 grid of the k that maximises PSNR. k = 1 is the official posterior.
"""
from __future__ import annotations

import math

import torch
from scipy.optimize import minimize_scalar
from torch import nn

from engine.inference import has_srgb_gaussian_head, head_output
from utils.errors import UserError
from utils.gaussian import loglike_loss, scaled_prior

AUTO = "auto"
SCALE_BOUNDS = (0.05, 4.0)
# The fit runs the model once on the centre of the first frames: enough pixels for one number.
FIT_FRAMES = 8
FIT_SIDE = 256


def parse_prior_scale(text: str) -> float | None:
    """A --prior_scale value: a positive number, or 'auto' (None: fit it on the input)."""
    if text == AUTO:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"--prior_scale: expected a positive number or auto, got '{text}'")
    return value


def fit_prior_scale_to_output(out: torch.Tensor, noisy: torch.Tensor, sigma: float) -> float:
    """The k in SCALE_BOUNDS that minimises the Gaussian NLL of `noisy` under `scaled_prior(out, k)`."""
    def nll(log_scale: float) -> float:
        return float(loglike_loss(scaled_prior(out, math.exp(log_scale)), noisy, sigma))

    low, high = (math.log(bound) for bound in SCALE_BOUNDS)
    return math.exp(minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-3}).x)


def fit_prior_scale(model: nn.Module, seqn: torch.Tensor, sigma: float,
                    frames: int = FIT_FRAMES, side: int = FIT_SIDE) -> float:
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
