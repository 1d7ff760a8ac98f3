"""Low-frequency anchoring: the output keeps its detail and takes its local means from the input.

The noisy input is unbiased at low spatial frequencies (zero-mean noise averages out under a blur),
while a small model's prior mean is not: the default model's output drifts in hue and brightness
(chroma error on `bunny` at sigma 25 three times the noisy input's, docs in weights/README.md).
Adding back the Gaussian-blurred residual `blur(noisy - denoised)` replaces the output's low
frequencies by the input's and leaves its high frequencies as the posterior made them; the blurred
noise it lets in has about sigma / (3.5 * blur_px) of standard deviation. A stored video is clipped
to [0, 1], which biases its local means near black and white; the residual is therefore taken
against the clipped mean that the estimate predicts (`expected_clipped`), not the estimate itself
(without this, the anchor costs 0.5 dB on carphone at sigma 50; with it, it gains 0.9).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

# Gaussian standard deviation in pixels for the default model (measured: weights/README.md, "Colour").
DEFAULT_ANCHOR_PX = 5.0


def expected_clipped(clean: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[clip(clean + n, 0, 1)] for n ~ N(0, sigma^2): what a stored (clipped) noisy frame averages to
    where the scene is `clean`. Near black and white it is not `clean` (at sigma 50, black stores as
    about 20 grey levels), so the anchor compares the input with this, not with the estimate itself."""
    if sigma <= 0:
        return clean
    low, high = -clean / sigma, (1.0 - clean) / sigma
    density = torch.distributions.Normal(0.0, 1.0)
    inside = torch.special.ndtr(high) - torch.special.ndtr(low)
    return (clean * inside + sigma * (density.log_prob(low).exp() - density.log_prob(high).exp())
            + (1.0 - torch.special.ndtr(high)))


def anchor_low_frequencies(denoised: torch.Tensor, noisy: torch.Tensor, blur_px: float,
                           sigma: float = 0.0) -> torch.Tensor:
    """(C,H,W) `denoised` on [0, 1] with the `blur_px`-pixel Gaussian blur of the input's residual
    added back, clamped to [0, 1]; `noisy` is the input as stored (clipped to [0, 1]) with noise
    level `sigma` (on [0, 1]), the residual `noisy - expected_clipped(denoised, sigma)`. `blur_px` 0
    returns `denoised` unchanged."""
    if blur_px <= 0:
        return denoised
    estimate = denoised.float()
    residual = (noisy.float() - expected_clipped(estimate, float(sigma))).permute(1, 2, 0).cpu().numpy()
    low = cv2.GaussianBlur(np.ascontiguousarray(residual), (0, 0), blur_px)
    if low.ndim == 2:  # OpenCV drops a single channel's axis
        low = low[..., None]
    return (denoised + torch.from_numpy(low).permute(2, 0, 1).to(denoised)).clamp_(0.0, 1.0)
