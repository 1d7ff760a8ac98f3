"""Which precision the network runs in at inference: float32, or bf16 where it is native and safe.

`--precision fp32` is the reference (and the official protocol's); `bf16` runs the network's
convolutions under bf16 autocast (flows, the Gaussian algebra and the posterior stay float32);
`auto` picks bf16 only where the hardware computes it natively (CUDA with bf16 support, CPUs with
avx512_bf16 or AMX, as oneDNN reports) and where a one-time check on the loaded model passes: the
first frames denoised both ways differ by less than `AUTO_TOLERANCE_GREY` grey levels on average.
Otherwise float32, with one line saying why.
"""
from __future__ import annotations

import torch
from torch import nn

from engine.inference.sequence import Noise, denoise_frames
from utils.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16")
# The auto check: mean |bf16 - float32| of the denoised check frames, in 8-bit grey levels. Half a
# grey level is below the rounding step of an 8-bit output; the default model measures 0.11-0.25
# on the built-in clips at sigma 10-50.
AUTO_TOLERANCE_GREY = 0.5
CHECK_FRAMES = 3
CHECK_SIDE = 128


def bf16_native(device: torch.device) -> bool:
    """Whether `device` computes bf16 convolutions in hardware (else they are emulated, and slow)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_difference_grey(model: nn.Module, seqn: torch.Tensor, sigma: Noise) -> float:
    """Mean |bf16 - float32| (8-bit grey levels) of the denoised centre crop of the first frames."""
    height, width = seqn.shape[-2:]
    top, left = max(0, (height - CHECK_SIDE) // 2), max(0, (width - CHECK_SIDE) // 2)
    crop = seqn[:CHECK_FRAMES, :, top:top + CHECK_SIDE, left:left + CHECK_SIDE]
    reference = torch.stack([f for _, f in denoise_frames(model, crop, sigma, "full")])
    reduced = torch.stack([f for _, f in denoise_frames(model, crop, sigma, "full", precision=torch.bfloat16)])
    return float((reduced - reference).abs().mean()) * 255.0


def choose_precision(name: str, model: nn.Module, seqn: torch.Tensor | None,
                     sigma: Noise) -> tuple[torch.dtype | None, str]:
    """(the autocast dtype, None for float32; one line saying what was chosen and why). `seqn`: the
    first noisy frames (T,C,H,W), which the 'auto' check denoises both ways (unused otherwise)."""
    if name not in PRECISIONS:
        raise UserError(f"--precision: unknown precision {name!r}; expected one of {', '.join(PRECISIONS)}")
    device = next(model.parameters()).device
    if name == "fp32":
        return None, "precision float32"
    if name == "bf16":
        note = "" if bf16_native(device) else " (not native on this hardware: emulated, slower than float32)"
        return torch.bfloat16, "precision bf16" + note
    if not bf16_native(device):
        what = "this GPU" if device.type == "cuda" else "this CPU (no avx512_bf16 or AMX)"
        return None, f"precision float32: bf16 is not native on {what}"
    difference = bf16_difference_grey(model, seqn, sigma)
    if difference >= AUTO_TOLERANCE_GREY:
        return None, (f"precision float32: bf16 changes this model's output by {difference:.2f} grey levels on "
                      f"average on the first frames (limit {AUTO_TOLERANCE_GREY:g})")
    return torch.bfloat16, (f"precision bf16 (native here; the first frames differ from float32 by "
                            f"{difference:.3f} grey levels on average)")
