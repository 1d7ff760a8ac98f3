"""Trust a custom GPU kernel only after it agrees with the reference path once.

The CuPy cost-volume and splatting kernels are compiled at run time for whatever GPU is present.
Before one is used on a (device, dtype), `kernel_trusted` runs it once on a small seeded random
input next to the PyTorch reference, forward and backward, and compares. On a mismatch beyond the
tolerance (or an error), it warns once and the caller keeps the PyTorch path for that (device,
dtype) for the rest of the process. `kernel_verdicts()` says which path each kernel took.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from utils.errors import warn

Kernel = Callable[..., torch.Tensor]
# (kernel name, device, dtype) -> trusted?
_VERDICTS: dict[tuple[str, str, torch.dtype], bool] = {}


def kernel_trusted(name: str, kernel: Kernel, reference: Kernel, inputs: Callable[[], Sequence[torch.Tensor]],
                   device: torch.device, dtype: torch.dtype, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Whether `kernel` may replace `reference` on (`device`, `dtype`); decided once per process.

    `inputs()` makes the probe tensors (on `device`, of `dtype`); both paths get copies that require
    gradients, and the gradients of a fixed random projection of the output are compared too.
    """
    key = (name, str(device), dtype)
    if key not in _VERDICTS:
        problem = _compare(kernel, reference, inputs, rtol, atol)
        if problem:
            warn(f"{name}: the CuPy kernel disagrees with the PyTorch path on {device} {dtype} ({problem}); "
                 "using the PyTorch path")
        _VERDICTS[key] = not problem
    return _VERDICTS[key]


def kernel_verdicts() -> dict[str, str]:
    """'name on device dtype' -> 'cupy' (checked and used) or 'torch' (fell back), for reports."""
    return {f"{name} on {device} {str(dtype).removeprefix('torch.')}": "cupy" if ok else "torch"
            for (name, device, dtype), ok in _VERDICTS.items()}


def _compare(kernel: Kernel, reference: Kernel, inputs: Callable[[], Sequence[torch.Tensor]],
             rtol: float, atol: float) -> str:
    """'' when both paths agree within `atol + rtol * largest reference value`, else what differs."""
    try:
        with torch.enable_grad(), torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            probe = [t.detach() for t in inputs()]
            outputs, grads = [], []
            for fn in (kernel, reference):
                args = [t.clone().requires_grad_(t.is_floating_point()) for t in probe]
                out = fn(*args)
                projection = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
                differentiable = [a for a in args if a.requires_grad]
                grads.append(torch.autograd.grad((out * projection).sum(), differentiable, allow_unused=True))
                outputs.append(out.detach())
    except Exception as exc:  # noqa: BLE001 - a kernel that fails to run is not trusted either
        return f"it raised {type(exc).__name__}: {exc}"
    pairs = [("output", outputs[0], outputs[1])]
    pairs += [(f"gradient {i}", a, b) for i, (a, b) in enumerate(zip(*grads)) if a is not None or b is not None]
    for what, got, want in pairs:
        if got is None or want is None or got.shape != want.shape:
            return f"{what}: missing or of another shape"
        if not bool(torch.isfinite(got).all()):
            return f"{what} is not finite"
        scale = want.abs().max().item() or 1.0
        error = (got - want).abs().max().item()
        if error > atol + rtol * scale:
            return f"{what} differs by {error:.3g} (largest value {scale:.3g})"
    return ""

