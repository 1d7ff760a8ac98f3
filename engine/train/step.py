"""One self-supervised STBN optimisation step, shared by training and per-video fine-tuning.

The official step: the noisy clip is both the network input and the target of the Gaussian
log-likelihood (utils/gaussian.py) on all frames; gradients are clipped to norm 1; Adam steps.
Flow distillation, when on, adds its term to the same loss.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from engine.train.distill import FlowDistillation
from engine.train.distributed import DistContext, all_ranks_true, average_gradients
from utils.gaussian import loglike_loss

GRAD_CLIP_NORM = 1.0
# CPU flags of native bfloat16 arithmetic: without them bf16 autocast on the CPU is emulated (slow).
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def training_amp_supported(device: torch.device) -> bool:
    """Whether `--amp` trains in bf16 on `device`: CUDA only.

    On the CPU (torch 2.13, oneDNN) the weight gradient of the dilated 3x3 convolutions under bf16
    autocast comes out NaN: every step of a 20-channel model on 64x64 clips of the built-in video
    was non-finite, with one thread and with two. The forward pass is fine, so bf16 inference
    (`amp_supported`, benchmarks/precision.py) stays available there.
    """
    return device.type == "cuda"


def amp_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively: any CUDA device, or a CPU with bf16 units."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in _CPU_BF16_FLAGS)


def compute_loss(model: nn.Module, seqn: torch.Tensor, noise_map: torch.Tensor | None,
                 sigma: torch.Tensor | None, amp: bool = False, distillation: FlowDistillation | None = None,
                 loss: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None,
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Forward one noisy batch and return `(loss terms, network output (N,T,K,H,W) in float32)`.

    The terms are summed into the loss that is back-propagated: the likelihood (always in
    float32; `loss(out)` gives other terms instead, e.g. the raw model's) and, when `distillation`
    is given, the flow-distillation term 'flow'. `amp` runs the network's convolutions under bf16
    autocast (flows and the Gaussian algebra stay float32).
    """
    with torch.autocast(device_type=seqn.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(seqn, noise_map)[0]
    out = out.float()
    terms = loss(out) if loss is not None else {"loglike": loglike_loss(out, seqn, sigma)}
    if distillation is not None:
        terms["flow"] = distillation.loss(seqn, out)
    return terms, out


@dataclass
class StepResult:
    """What one step did: whether it was applied (finite loss and gradients), its loss, the output."""

    finite: bool
    loss: float
    out: torch.Tensor


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
               seqn: torch.Tensor, noise_map: torch.Tensor, sigma: torch.Tensor, amp: bool = False,
               distillation: FlowDistillation | None = None, ctx: DistContext | None = None) -> StepResult:
    """One optimisation step on a noisy batch seqn (N,T,C,H,W) with its noise map and sigmas (N,).

    Loss (`compute_loss`), then `apply_step` with the official gradient clipping at `GRAD_CLIP_NORM`.
    """
    terms, out = compute_loss(model, seqn, noise_map, sigma, amp, distillation)
    return apply_step(terms, out, optimizer, params, GRAD_CLIP_NORM, distillation, ctx)


def apply_step(terms: dict[str, torch.Tensor], out: torch.Tensor, optimizer: torch.optim.Optimizer,
               params: list[nn.Parameter], clip_norm: float | None = GRAD_CLIP_NORM,
               distillation: FlowDistillation | None = None, ctx: DistContext | None = None) -> StepResult:
    """Backward of the summed loss `terms`, gradient-norm clipping of `params` at `clip_norm` (None:
    no clipping, as the official raw training), Adam step.

    A non-finite loss or gradient norm skips the step (nothing is changed). Under DDP (`ctx`) all
    ranks agree on skipping, so none waits for a missing backward, and the distillation student,
    which DDP does not manage, has its gradients averaged here.
    """
    loss = sum(terms.values())
    optimizer.zero_grad(set_to_none=True)
    finite = all_ranks_true(ctx, bool(torch.isfinite(loss)))
    if finite:
        loss.backward()
        if distillation is not None:
            average_gradients(ctx, distillation.student.parameters())
        grad_norm = nn.utils.clip_grad_norm_(params, clip_norm if clip_norm is not None else float("inf"))
        finite = bool(torch.isfinite(grad_norm))  # gradients are all-reduced: same on all ranks
        if finite:
            optimizer.step()
    return StepResult(finite, float(loss.detach()), out.detach())
