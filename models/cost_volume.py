"""PWC-Net's cost volume (local correlation), in PyTorch and as a CuPy CUDA kernel.

Definition (the one the authors' CuPy layer computes): for displacements dy, dx in [-4, 4],
output channel k = (dy+4)*9 + (dx+4) holds the mean over feature channels of
first[:, :, y, x] * second[:, :, y+dy, x+dx], with zeros where y+dy or x+dx lies outside.

`cost_volume` picks the CuPy kernel for CUDA tensors when CuPy imports and compiles (forward and
backward on the current torch stream) and the pure-PyTorch path otherwise; both are
differentiable. CuPy is optional and imported only when a CUDA tensor arrives.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import warn
from utils.kernel_check import kernel_trusted

MAX_DISPLACEMENT = 4
WINDOW = 2 * MAX_DISPLACEMENT + 1  # 9 displacements per axis
NUM_DISPLACEMENTS = WINDOW * WINDOW  # 81 output channels
_TILE = 8  # pixels per banded product in the PyTorch path (8 was fastest at PWC's levels)


def cost_volume(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) x (N,C,H,W) -> (N,81,H,W) correlation; CuPy on CUDA when available."""
    if first.shape != second.shape or first.dim() != 4:
        raise ValueError(f"cost_volume needs two equal (N,C,H,W) tensors, got {tuple(first.shape)} "
                         f"and {tuple(second.shape)}")
    if _cupy_kernel_usable(first):
        return _CupyCostVolume.apply(first, second)
    return cost_volume_torch(first, second)


def _on_cuda(tensor: torch.Tensor) -> bool:
    return tensor.is_cuda


def _cupy_kernel_usable(first: torch.Tensor) -> bool:
    """CuPy kernels on CUDA when they compile and, once per device and dtype, agree with the PyTorch
    path on a small random input (forward and backward); otherwise the PyTorch path."""
    if not (_on_cuda(first) and cupy_cost_volume_available(first.device.index)):
        return False

    def probe() -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        return tuple(torch.randn(2, 8, 9, 11, generator=generator).to(first.device, first.dtype) for _ in range(2))

    return kernel_trusted("cost volume", _CupyCostVolume.apply, cost_volume_torch, probe, first.device,
                          first.dtype, rtol=1e-3 if first.dtype in (torch.float16, torch.bfloat16) else 1e-4)


def cost_volume_torch(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Pure-PyTorch cost volume as banded matrix products.

    For each row offset dy, every tile of `_TILE` pixels of `first` is multiplied (one batched
    matmul over channels) with the `_TILE + 8` pixels of the padded `second` row that any of
    its displacements can reach; the 9 diagonals of each small product are the 9 dx values.
    This reads each input 9 times instead of building 81 channel-wide products (several times
    faster on the CPU) and is differentiable.
    """
    batch, channels, height, width = first.shape
    tiles = -(-width // _TILE)
    extra = tiles * _TILE - width
    span = _TILE + 2 * MAX_DISPLACEMENT
    pixels = (F.pad(first, [0, extra]).view(batch, channels, height, tiles, _TILE)
              .permute(0, 2, 3, 4, 1).reshape(-1, _TILE, channels))
    padded = F.pad(second, [MAX_DISPLACEMENT, MAX_DISPLACEMENT + extra, MAX_DISPLACEMENT, MAX_DISPLACEMENT])
    # Pixel i of a tile meets window column i + dx + 4 at displacement dx.
    band = (torch.arange(_TILE, device=first.device).view(_TILE, 1)
            + torch.arange(WINDOW, device=first.device).view(1, WINDOW)).expand(pixels.shape[0], -1, -1)
    rows = []
    for dy in range(WINDOW):
        windows = (padded[:, :, dy:dy + height].unfold(3, span, _TILE)
                   .permute(0, 2, 3, 1, 4).reshape(-1, channels, span))
        rows.append(torch.bmm(pixels, windows).gather(2, band))  # (N*H*tiles, TILE, 9 dx)
    volume = (torch.stack(rows, dim=1).view(batch, height, tiles, WINDOW, _TILE, WINDOW)
              .permute(0, 3, 5, 1, 2, 4).reshape(batch, NUM_DISPLACEMENTS, height, tiles * _TILE))
    return volume[..., :width] / channels


# ---------------------------------------------------------------------------------------------
# CuPy CUDA kernels. One thread per output element; no atomics, so results are deterministic.
# ---------------------------------------------------------------------------------------------

_KERNEL_SOURCE = r"""
#define RADIUS 4
#define WINDOW 9
#define DISPLACEMENTS 81

extern "C" __global__ void cost_volume_forward(
    const long long total, const int channels, const int height, const int width,
    const SCALAR* __restrict__ first, const SCALAR* __restrict__ second, SCALAR* __restrict__ out)
{
    for (long long index = blockIdx.x * (long long)blockDim.x + threadIdx.x; index < total;
         index += (long long)blockDim.x * gridDim.x) {
        const int x = index % width;
        const int y = (index / width) % height;
        const int k = (index / ((long long)width * height)) % DISPLACEMENTS;
        const long long n = index / ((long long)width * height * DISPLACEMENTS);
        const int sy = y + k / WINDOW - RADIUS;
        const int sx = x + k % WINDOW - RADIUS;
        SCALAR acc = 0;
        if (sy >= 0 && sy < height && sx >= 0 && sx < width) {
            const long long plane = (long long)height * width;
            const SCALAR* a = first + n * channels * plane + (long long)y * width + x;
            const SCALAR* b = second + n * channels * plane + (long long)sy * width + sx;
            for (int c = 0; c < channels; ++c) acc += a[c * plane] * b[c * plane];
        }
        out[index] = acc / (SCALAR)channels;
    }
}

extern "C" __global__ void cost_volume_backward(
    const long long total, const int channels, const int height, const int width,
    const SCALAR* __restrict__ first, const SCALAR* __restrict__ second,
    const SCALAR* __restrict__ grad_out, SCALAR* __restrict__ grad_first,
    SCALAR* __restrict__ grad_second)
{
    for (long long index = blockIdx.x * (long long)blockDim.x + threadIdx.x; index < total;
         index += (long long)blockDim.x * gridDim.x) {
        const int x = index % width;
        const int y = (index / width) % height;
        const long long nc = index / ((long long)width * height);
        const long long n = nc / channels;
        const long long plane = (long long)height * width;
        const SCALAR* b = second + nc * plane;
        const SCALAR* a = first + nc * plane;
        const SCALAR* g = grad_out + n * DISPLACEMENTS * plane;
        SCALAR acc_first = 0;
        SCALAR acc_second = 0;
        for (int k = 0; k < DISPLACEMENTS; ++k) {
            const int dy = k / WINDOW - RADIUS;
            const int dx = k % WINDOW - RADIUS;
            // d out[k, y, x] / d first[c, y, x] = second[c, y+dy, x+dx] / C
            const int sy = y + dy, sx = x + dx;
            if (sy >= 0 && sy < height && sx >= 0 && sx < width)
                acc_first += g[k * plane + (long long)y * width + x] * b[(long long)sy * width + sx];
            // d out[k, y-dy, x-dx] / d second[c, y, x] = first[c, y-dy, x-dx] / C
            const int ty = y - dy, tx = x - dx;
            if (ty >= 0 && ty < height && tx >= 0 && tx < width)
                acc_second += g[k * plane + (long long)ty * width + tx] * a[(long long)ty * width + tx];
        }
        grad_first[index] = acc_first / (SCALAR)channels;
        grad_second[index] = acc_second / (SCALAR)channels;
    }
}
"""

_THREADS = 256
_MAX_BLOCKS = 65535 * 8  # the kernels loop over the remaining elements (grid-stride)
_CUDA_TYPES = {torch.float32: "float", torch.float64: "double"}


@functools.cache
def _compiled_modules(device_index: int) -> dict:
    """One RawModule per scalar type, compiled for GPU `device_index` once per process."""
    import cupy

    modules = {}
    with cupy.cuda.Device(device_index):
        for dtype, name in _CUDA_TYPES.items():
            modules[dtype] = cupy.RawModule(code=_KERNEL_SOURCE, options=("-DSCALAR=" + name,))
            modules[dtype].compile()
    return modules


@functools.cache
def cupy_cost_volume_available(device_index: int) -> bool:
    """True when CuPy imports and the kernels compile on this GPU; warns once otherwise."""
    try:
        _compiled_modules(device_index)
    except ImportError:
        return False
    except Exception as exc:  # noqa: BLE001 - NVRTC missing or failing: stay on PyTorch
        warn(f"cost volume: CuPy kernels unavailable ({exc}); using the PyTorch path")
        return False
    return True


def _launch(name: str, like: torch.Tensor, total: int, *args) -> None:
    """Launch kernel `name` over `total` elements on PyTorch's current stream of `like`'s GPU."""
    import cupy

    index = like.device.index
    kernel = _compiled_modules(index)[like.dtype].get_function(name)
    blocks = min((total + _THREADS - 1) // _THREADS, _MAX_BLOCKS)
    sizes = (np.int32(like.shape[1]), np.int32(like.shape[2]), np.int32(like.shape[3]))
    # RawKernel launches on CuPy's current stream: make it PyTorch's, so ordering is preserved.
    with cupy.cuda.Device(index), cupy.cuda.ExternalStream(torch.cuda.current_stream(like.device).cuda_stream):
        kernel((blocks,), (_THREADS,), (np.int64(total), *sizes, *args))


def _kernel_dtype(dtype: torch.dtype) -> torch.dtype:
    """The kernels run in float32 or float64; half/bfloat16 inputs are computed in float32."""
    return dtype if dtype in _CUDA_TYPES else torch.float32


class _CupyCostVolume(torch.autograd.Function):
    """Autograd boundary around the CUDA kernels (inputs made contiguous, output in input dtype)."""

    @staticmethod
    def forward(ctx, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        work = _kernel_dtype(first.dtype)
        first_c = first.detach().to(work).contiguous()
        second_c = second.detach().to(work).contiguous()
        out = first_c.new_zeros(first_c.shape[0], NUM_DISPLACEMENTS, *first_c.shape[2:])
        if out.numel() > 0:
            _launch("cost_volume_forward", first_c, out.numel(),
                    first_c.data_ptr(), second_c.data_ptr(), out.data_ptr())
        ctx.save_for_backward(first_c, second_c)
        ctx.input_dtypes = (first.dtype, second.dtype)
        return out.to(first.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first_c, second_c = ctx.saved_tensors
        grad_c = grad_out.to(first_c.dtype).contiguous()
        grad_first = torch.zeros_like(first_c)
        grad_second = torch.zeros_like(second_c)
        if first_c.numel() > 0:
            _launch("cost_volume_backward", first_c, first_c.numel(),
                    first_c.data_ptr(), second_c.data_ptr(), grad_c.data_ptr(),
                    grad_first.data_ptr(), grad_second.data_ptr())
        dtype_first, dtype_second = ctx.input_dtypes
        return grad_first.to(dtype_first), grad_second.to(dtype_second)
