"""What a training loop step and validation mean for one kind of data: the sRGB recipe or raw video.

The loop (engine/train/loop.py) is the same for both; a task says how a loader item becomes a noisy
batch, which loss and gradient clipping a step uses, what is logged, and how an epoch is validated:
- `SrgbTask`, the official sRGB recipe: clean uint8 clips, AWGN drawn per clip, Gaussian
  log-likelihood, clipping at 1, validation by the official test protocol at one sigma;
- `RawTask`, the official CRVD recipe: real (or simulated) noisy raw captures, the plain blind-spot
  MSE against them, no clipping, validation with 12-bit quantisation and the per-ISO mean; or,
  with `loss='gaussian'`, the heteroscedastic likelihood (utils/gaussian_hetero.py).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from engine.inference.scoring import score_sequence
from engine.inference.sequence import denoise_sequence, raw_clean_estimate
from engine.train.distill import FlowDistillation
from engine.train.distributed import DistContext
from engine.train.step import GRAD_CLIP_NORM, StepResult, apply_step, compute_loss, train_step
from utils.gaussian import posterior_mean
from utils.gaussian_hetero import hetero_loglike_loss
from utils.metrics import sequence_psnr
from utils.noise import PoissonGaussian, add_train_noise, sample_train_sigma
from utils.raw import blind_spot_mse, validation_psnr

RAW_LOSSES = ("mse", "gaussian")


class NonFiniteOutputs(Exception):
    """A validation whose denoised outputs are not finite: the epoch is not a good one to keep."""


def batch_psnr(images: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean over clips of the official per-frame PSNR, images clamped to [0, 1] first (logging only)."""
    images = images.detach().clamp(0, 1).cpu()
    clean = clean.cpu()
    return float(np.mean([sequence_psnr(images[n], clean[n]) for n in range(images.shape[0])]))


@dataclass
class Batch:
    """One training batch: the noisy clips (network input and self-supervised target), their
    noise (a sigma per clip, or Poisson-Gaussian parameters), and the clean clips for logging."""

    noisy: torch.Tensor
    clean: torch.Tensor
    noise: torch.Tensor | PoissonGaussian
    noise_map: torch.Tensor | None = None


class TrainingTask(Protocol):
    """What the loop asks of a kind of training data (see the module docstring)."""

    def prepare(self, item: Any, device: torch.device) -> Batch: ...

    def step(self, model: nn.Module, optimizer, params: list[nn.Parameter], batch: Batch, amp: bool,
             distillation: FlowDistillation | None, ctx: DistContext) -> StepResult: ...

    def train_metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, float]: ...

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, Any]: ...


class SrgbTask:
    """The official sRGB recipe (see engine/train/loop.py)."""

    clip_norm = GRAD_CLIP_NORM

    def __init__(self, noise_ival: list[float], val_sequences: Iterable[tuple[str, torch.Tensor]],
                 val_sigma: float) -> None:
        self.noise_ival, self.val_sequences, self.val_sigma = noise_ival, val_sequences, val_sigma

    def prepare(self, clips: torch.Tensor, device: torch.device) -> Batch:
        clean = clips.to(device, non_blocking=True).float().div_(255)
        sigma = sample_train_sigma(clean.shape[0], self.noise_ival, device=device)
        noisy, noise_map = add_train_noise(clean, sigma)
        return Batch(noisy, clean, sigma.view(-1), noise_map)

    def step(self, model: nn.Module, optimizer, params: list[nn.Parameter], batch: Batch, amp: bool,
             distillation: FlowDistillation | None, ctx: DistContext) -> StepResult:
        return train_step(model, optimizer, params, batch.noisy, batch.noise_map, batch.noise, amp, distillation, ctx)

    def train_metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, float]:
        """PSNR of the posterior mean and of the predicted mean (the official log line)."""
        return {"psnr": batch_psnr(posterior_mean(out, batch.noisy, batch.noise), batch.clean),
                "psnr_mean": batch_psnr(out[:, :, :3], batch.clean)}

    @torch.no_grad()
    def validate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Mean over sequences of the per-frame PSNR of the posterior mean (official test protocol).

        Noise is seeded per sequence (`add_test_noise`), so epochs are compared on the same noise.
        """
        was_training = model.training
        model.eval()
        scores = [score_sequence(model, clean, self.val_sigma, ssim=False, require_finite=False)[1].psnr
                  for _, clean in self.val_sequences]
        if not all(math.isfinite(s) for s in scores):
            raise NonFiniteOutputs("the validation outputs are NaN")
        model.train(was_training)
        return {"val_psnr": float(np.mean(scores)) if scores else None}


class RawTask:
    """The official CRVD recipe, or our heteroscedastic Gaussian variant (`loss='gaussian'`)."""

    def __init__(self, loss: str, val_data: Iterable[dict[str, Any]]) -> None:
        if loss not in RAW_LOSSES:
            raise ValueError(f"unknown raw loss {loss!r}; expected one of {RAW_LOSSES}")
        self.loss, self.val_data = loss, val_data
        # The official raw script has no clipping; the likelihood trains with the sRGB recipe's.
        self.clip_norm = GRAD_CLIP_NORM if loss == "gaussian" else None

    def prepare(self, item: dict[str, torch.Tensor], device: torch.device) -> Batch:
        noise = PoissonGaussian(item["a"].to(device), item["b"].to(device))
        return Batch(item["noisy"].to(device, non_blocking=True), item["clean"].to(device, non_blocking=True), noise)

    def step(self, model: nn.Module, optimizer, params: list[nn.Parameter], batch: Batch, amp: bool,
             distillation: FlowDistillation | None, ctx: DistContext) -> StepResult:
        terms, out = compute_loss(model, batch.noisy, None, None, amp, distillation, loss=self._loss(batch))
        return apply_step(terms, out, optimizer, params, self.clip_norm, distillation, ctx)

    def _loss(self, batch: Batch):
        channels = batch.noisy.shape[2]
        if self.loss == "mse":
            return lambda out: {"mse": blind_spot_mse(out, batch.noisy)}
        return lambda out: {"loglike": hetero_loglike_loss(
            out, batch.noisy, batch.noise.variance(out[:, :, :channels].detach()))}

    def train_metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, float]:
        return {"psnr": batch_psnr(raw_clean_estimate(out, batch.noisy, batch.noise), batch.clean)}

    @torch.no_grad()
    def validate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Per-ISO mean PSNR of the 12-bit quantised output over the test sequences ('val_psnr_ISO<iso>')
        and their mean 'val_psnr' (the official log sums the per-ISO means; the mean is comparable)."""
        was_training = model.training
        model.eval()
        per_iso: dict[str, list[float]] = {}
        for item in self.val_data:
            noise = PoissonGaussian(item["a"], item["b"])
            denoised = denoise_sequence(model, item["noisy"], noise)
            if not bool(torch.isfinite(denoised).all()):  # 12-bit quantisation would hide NaN as a number
                raise NonFiniteOutputs("the validation outputs are NaN or inf")
            scores = [validation_psnr(d, c) for d, c in zip(denoised, item["clean"])]
            per_iso.setdefault(str(item["iso"]), []).append(float(np.mean(scores)))
        model.train(was_training)
        if not per_iso:
            return {"val_psnr": None}
        means = {f"val_psnr_ISO{iso}": float(np.mean(values)) for iso, values in per_iso.items()}
        return {"val_psnr": float(np.mean(list(means.values()))), **means}
