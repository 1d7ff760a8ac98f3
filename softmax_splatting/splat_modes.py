"""Forward warping (softmax splatting, Niklaus & Liu, CVPR 2020): the one entry point `splat`.

Semantics (same as sniklaus/softmax-splatting):
- `tenFlow` channel 0 is x, channel 1 is y, in pixels. Source pixel q=(x,y) lands at
  p* = q + F(q) and is spread onto the 4 integer neighbours of p* with bilinear weights;
  neighbours outside the image are dropped (that mass is lost).
- Sources whose target is non-finite (NaN/inf flow) or too far to touch the image are skipped,
  in both backends, instead of crashing or writing out of bounds (upstream issue #38).
- Modes: 'sum' = sum of splatted values; 'avg' = sum(b*I)/sum(b); 'linear' = sum(b*Z*I)/sum(b*Z);
  'soft' = sum(b*exp(Z)*I)/sum(b*exp(Z)). FloRNN's names 'summation', 'average', 'softmax' are
  accepted. Each normalised mode is one 'sum' splat of [I*w, w] followed by a division, so only
  the sum splat needs a kernel and the metric gradient comes for free.
- Normaliser rule (the last channel, sum(b*w)): default zero->1, the version copied into FloRNN
  (upstream PR #23): targets nobody reaches come out exactly 0 and there is no eps bias.
  Suffix '-zeroeps' names it explicitly; '-addeps' adds 1e-7 (upstream HEAD's default);
  '-clipeps' clips it to >= 1e-7. Example: 'soft-addeps'.
- Metric Z (N,1,H,W): larger Z wins. Callers typically pass (-20 * photometric_error).clip(-20, 20)
  for 'soft' (upstream README, issue #38) and (0.3 - error).clip(0.001, 1) for 'linear'.
  Sources with a non-finite Z are skipped like non-finite flows.
- Overflow: 'soft' does not clamp Z. It computes exp(Z - m) with m the largest finite Z of each
  sample (a constant, no gradient): the ratio is unchanged, and the eps of '-addeps'/'-clipeps'
  is scaled by exp(-m) so those variants stay exactly upstream's formula, yet nothing overflows.
- Dtypes: float32/float64 are computed as given; float16/bfloat16 are computed in float32 and
  cast back (half-precision atomics would lose most of the sum).
- Backends: 'auto' uses the CuPy kernels for CUDA tensors when CuPy works, else PyTorch
  `scatter_add_`; both are non-deterministic on CUDA at the ~1e-6 level (atomic order).
"""

import torch
from torch import Tensor

from softmax_splatting.splat_cupy import cupy_splat_available, sum_splat_cupy
from softmax_splatting.splat_torch import sum_splat_torch
from utils.kernel_check import kernel_trusted

MODE_ALIASES = {"sum": "sum", "summation": "sum", "avg": "avg", "average": "avg",
                "linear": "linear", "soft": "soft", "softmax": "soft"}
NORMALISER_RULES = ("zeroeps", "addeps", "clipeps")
NORMALISER_EPS = 1e-7
BACKENDS = ("auto", "torch", "cupy")


def parse_mode(mode: str) -> tuple[str, str]:
    """'soft-addeps' -> ('soft', 'addeps'); a plain name gets the default rule 'zeroeps'."""
    name, dash, rule = mode.partition("-")
    rule = rule if dash else "zeroeps"
    if name not in MODE_ALIASES or rule not in NORMALISER_RULES:
        raise ValueError(
            f"splat mode {mode!r} unknown: use one of {sorted(MODE_ALIASES)} "
            f"optionally followed by -{'/-'.join(NORMALISER_RULES)}"
        )
    if MODE_ALIASES[name] == "sum" and mode != name:
        raise ValueError(f"splat mode {mode!r}: 'sum' has no normaliser, so takes no suffix")
    return MODE_ALIASES[name], rule


def _check_shapes(tenIn: Tensor, tenFlow: Tensor, tenMetric: Tensor | None, kind: str) -> None:
    if tenIn.dim() != 4 or not tenIn.is_floating_point():
        raise ValueError(f"splat input must be a float (N,C,H,W) tensor, got {tuple(tenIn.shape)} {tenIn.dtype}")
    N, _, H, W = tenIn.shape
    if tuple(tenFlow.shape) != (N, 2, H, W):
        raise ValueError(f"splat flow must be {(N, 2, H, W)} for input {tuple(tenIn.shape)}, "
                         f"got {tuple(tenFlow.shape)}")
    needs_metric = kind in ("linear", "soft")
    if needs_metric and tenMetric is None:
        raise ValueError(f"splat mode {kind!r} needs a metric (N,1,H,W)")
    if not needs_metric and tenMetric is not None:
        raise ValueError(f"splat mode {kind!r} takes no metric (it would be ignored)")
    if tenMetric is not None and tuple(tenMetric.shape) != (N, 1, H, W):
        raise ValueError(f"splat metric must be {(N, 1, H, W)}, got {tuple(tenMetric.shape)}")


def _sum_splat_backend(backend: str, tenIn: Tensor):
    if backend not in BACKENDS:
        raise ValueError(f"splat backend {backend!r} unknown: use one of {BACKENDS}")
    if backend == "torch":
        return sum_splat_torch
    cupy_ok = _on_cuda(tenIn) and cupy_splat_available(tenIn.device.index)
    if backend == "cupy" and not cupy_ok:
        raise ValueError("splat backend 'cupy' needs CUDA tensors and a working CuPy")
    if backend == "auto" and cupy_ok and not _cupy_splat_trusted(tenIn):
        return sum_splat_torch
    return sum_splat_cupy if cupy_ok else sum_splat_torch


def _on_cuda(tensor: Tensor) -> bool:
    return tensor.is_cuda


def _cupy_splat_trusted(like: Tensor) -> bool:
    """Once per device and dtype: the CuPy sum splat agrees with the PyTorch one on a small random
    input, forward and backward (else a warning and the PyTorch path, `utils.kernel_check`)."""
    def probe() -> tuple[Tensor, Tensor]:
        generator = torch.Generator().manual_seed(0)
        values = torch.randn(2, 3, 10, 12, generator=generator)
        flow = 3 * torch.randn(2, 2, 10, 12, generator=generator)
        return values.to(like.device, like.dtype), flow.to(like.device, like.dtype)

    return kernel_trusted("sum splat", sum_splat_cupy, sum_splat_torch, probe, like.device, like.dtype)


def _source_weight(kind: str, tenIn: Tensor, tenMetric: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-source weight w (N,1,H,W) and the factor by which it scales the eps (see module doc)."""
    unscaled = tenIn.new_ones(())
    if kind == "avg":
        return torch.ones_like(tenIn[:, :1]), unscaled
    finite = torch.isfinite(tenMetric)
    if kind == "linear":
        return torch.where(finite, tenMetric, 0.0), unscaled
    masked = torch.where(finite, tenMetric, float("-inf"))
    shift = masked.detach().amax(dim=(1, 2, 3), keepdim=True)
    shift = torch.where(torch.isfinite(shift), shift, 0.0)
    return torch.exp(masked - shift), torch.exp(-shift)


def _normalise(numerator: Tensor, normaliser: Tensor, rule: str, eps_scale: Tensor) -> Tensor:
    if rule == "zeroeps":
        normaliser = torch.where(normaliser == 0, 1.0, normaliser)
    elif rule == "addeps":
        normaliser = normaliser + NORMALISER_EPS * eps_scale
    else:
        normaliser = torch.maximum(normaliser, NORMALISER_EPS * eps_scale)
    return numerator / normaliser


def splat(tenIn: Tensor, tenFlow: Tensor, tenMetric: Tensor | None = None, mode: str = "sum",
          *, backend: str = "auto") -> Tensor:
    """Forward-warp `tenIn` (N,C,H,W) along `tenFlow` (N,2,H,W); returns (N,C,H,W). See module doc."""
    kind, rule = parse_mode(mode)
    _check_shapes(tenIn, tenFlow, tenMetric, kind)
    out_dtype = tenIn.dtype
    dtype = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    tenIn, tenFlow = tenIn.to(dtype), tenFlow.to(dtype)
    tenMetric = None if tenMetric is None else tenMetric.to(dtype)
    sum_splat = _sum_splat_backend(backend, tenIn)
    if kind == "sum":
        return sum_splat(tenIn, tenFlow).to(out_dtype)
    weight, eps_scale = _source_weight(kind, tenIn, tenMetric)
    weighted = tenIn if kind == "avg" else tenIn * weight  # avg's weight is 1: skip a full-size product
    splatted = sum_splat(torch.cat([weighted, weight], dim=1), tenFlow)
    out = _normalise(splatted[:, :-1], splatted[:, -1:], rule, eps_scale)
    return out.to(out_dtype)
