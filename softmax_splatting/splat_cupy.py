"""Summation splatting as CUDA kernels compiled by CuPy (NVRTC), with a hand-written backward.

Only the 'sum' splat has kernels; the normalised modes are built around it in PyTorch (see
`softmax_splatting.splat`), so their metric gradient flows through the input gradient here.
The kernels mirror upstream's `softsplat_out` / `softsplat_ingrad` / `softsplat_flowgrad`:
one thread per source element, `atomicAdd` into the 4 bilinear neighbours, and the same
reachability guard as the PyTorch path (non-finite or far-away targets are skipped).
CuPy is imported lazily; `cupy_splat_available()` is False where it is missing or cannot compile.
"""

import functools

import numpy as np
import torch
from torch import Tensor

from utils.errors import warn

THREADS_PER_BLOCK = 512

KERNEL_SOURCE = r"""
__device__ inline float floor_of(float v) { return floorf(v); }
__device__ inline double floor_of(double v) { return floor(v); }

// Shared prologue: target coordinates of source pixel (x, y) and whether it reaches the image.
// Comparisons with NaN are false, so non-finite flows are rejected before any integer cast.
template <typename T>
__device__ inline bool locate(const T* flow, long long n, long long y, long long x,
                              long long H, long long W, long long* x0, long long* y0,
                              T* frac_x, T* frac_y) {
    const long long HW = H * W;
    const T X = T(x) + flow[(n * 2 + 0) * HW + y * W + x];
    const T Y = T(y) + flow[(n * 2 + 1) * HW + y * W + x];
    if (!(X > T(-1) && X < T(W) && Y > T(-1) && Y < T(H))) return false;
    const T fx = floor_of(X), fy = floor_of(Y);
    *x0 = (long long)fx; *y0 = (long long)fy;
    *frac_x = X - fx; *frac_y = Y - fy;
    return true;
}

// Bilinear tap (dx, dy) of a target at (x0 + frac_x, y0 + frac_y): its flat index in a plane and
// its weight, or false when the tap falls outside the image.
template <typename T>
__device__ inline bool tap(long long x0, long long y0, T frac_x, T frac_y, int dx, int dy,
                           long long H, long long W, long long* index, T* weight) {
    const long long xi = x0 + dx, yi = y0 + dy;
    if (xi < 0 || xi >= W || yi < 0 || yi >= H) return false;
    *index = yi * W + xi;
    *weight = (dx ? frac_x : T(1) - frac_x) * (dy ? frac_y : T(1) - frac_y);
    return true;
}

// One thread per source element (n, c, y, x) and its 4 bilinear neighbours j. Forward
// (GATHER false): scatter values[i] * w_j into out[j] atomically. Input gradient (GATHER true),
// the transpose: out[i] = sum_j values[j] * w_j, with values the output gradient.
template <typename T, bool GATHER>
__global__ void sum_splat_taps(const long long total, const long long C, const long long H,
                               const long long W, const T* __restrict__ values,
                               const T* __restrict__ flow, T* __restrict__ out) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const long long x = i % W, y = (i / W) % H, plane = (i / (H * W)) * H * W;
    long long x0, y0, j; T fx, fy, weight;
    T acc = T(0);
    if (locate(flow, i / (C * H * W), y, x, H, W, &x0, &y0, &fx, &fy)) {
        for (int d = 0; d < 4; ++d) {
            if (!tap(x0, y0, fx, fy, d & 1, d >> 1, H, W, &j, &weight)) continue;
            if (GATHER) acc += values[plane + j] * weight;
            else atomicAdd(out + plane + j, values[i] * weight);
        }
    }
    if (GATHER) out[i] = acc;
}

// One thread per (n, component k, y, x) of the flow; loops over channels, so no atomics.
template <typename T>
__global__ void sum_splat_grad_flow(const long long total, const long long C, const long long H,
                                    const long long W, const T* __restrict__ input,
                                    const T* __restrict__ flow, const T* __restrict__ grad_out,
                                    T* __restrict__ grad_flow) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const long long HW = H * W;
    const long long x = i % W, y = (i / W) % H, k = (i / HW) % 2, n = i / (2 * HW);
    long long x0, y0; T fx, fy;
    T acc = T(0);
    if (locate(flow, n, y, x, H, W, &x0, &y0, &fx, &fy)) {
        for (int dy = 0; dy < 2; ++dy) {
            for (int dx = 0; dx < 2; ++dx) {
                const long long xi = x0 + dx, yi = y0 + dy;
                if (xi < 0 || xi >= W || yi < 0 || yi >= H) continue;
                const T wx = dx ? fx : T(1) - fx, wy = dy ? fy : T(1) - fy;
                const T dwx = dx ? T(1) : T(-1), dwy = dy ? T(1) : T(-1);
                const T dweight = k == 0 ? dwx * wy : wx * dwy;
                T dot = T(0);
                for (long long c = 0; c < C; ++c) {
                    const long long plane = (n * C + c) * HW;
                    dot += input[plane + y * W + x] * grad_out[plane + yi * W + xi];
                }
                acc += dweight * dot;
            }
        }
    }
    grad_flow[i] = acc;
}
"""

# The kernels by job, as C++ template instantiations ({t}: float or double).
KERNELS = {"forward": "sum_splat_taps<{t}, false>", "grad_input": "sum_splat_taps<{t}, true>",
           "grad_flow": "sum_splat_grad_flow<{t}>"}
CUDA_TYPES = {torch.float32: "float", torch.float64: "double"}


@functools.cache
def _compiled_module(device_index: int):
    """The RawModule for one GPU, compiled once per process (CuPy also caches it on disk)."""
    import cupy

    with cupy.cuda.Device(device_index):
        expressions = [kernel.format(t=t) for kernel in KERNELS.values() for t in CUDA_TYPES.values()]
        module = cupy.RawModule(code=KERNEL_SOURCE, name_expressions=expressions)
        module.compile()
        return module


@functools.cache
def cupy_splat_available(device_index: int = 0) -> bool:
    """True when CuPy imports and the kernels compile on this GPU; warns once otherwise."""
    try:
        _compiled_module(device_index)
    except ImportError:
        return False
    except Exception as exc:  # NVRTC missing or failing: keep working on the PyTorch path.
        warn(f"softmax_splatting: CuPy kernels unavailable ({exc}); using PyTorch splatting")
        return False
    return True


def _launch(job: str, tensor_for_type: Tensor, total: int, *args) -> None:
    import cupy

    device_index = tensor_for_type.device.index
    name = KERNELS[job].format(t=CUDA_TYPES[tensor_for_type.dtype])
    kernel = _compiled_module(device_index).get_function(name)
    torch_stream = torch.cuda.current_stream(tensor_for_type.device).cuda_stream
    blocks = (total + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    # RawKernel launches on CuPy's current stream: make it PyTorch's, so ordering is preserved.
    with cupy.cuda.Device(device_index), cupy.cuda.ExternalStream(torch_stream):
        kernel((blocks,), (THREADS_PER_BLOCK,), (np.int64(total), *args))


def _sizes(tenIn: Tensor) -> tuple:
    _, C, H, W = tenIn.shape
    return np.int64(C), np.int64(H), np.int64(W)


class _SumSplatCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tenIn: Tensor, tenFlow: Tensor) -> Tensor:
        tenIn, tenFlow = tenIn.contiguous(), tenFlow.contiguous()
        out = torch.zeros_like(tenIn)
        if tenIn.numel() > 0:
            _launch("forward", tenIn, tenIn.numel(), *_sizes(tenIn),
                    tenIn.data_ptr(), tenFlow.data_ptr(), out.data_ptr())
        ctx.save_for_backward(tenIn, tenFlow)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None]:
        tenIn, tenFlow = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_in = grad_flow = None
        if ctx.needs_input_grad[0]:
            grad_in = torch.empty_like(tenIn)
            if tenIn.numel() > 0:
                _launch("grad_input", tenIn, tenIn.numel(), *_sizes(tenIn),
                        grad_out.data_ptr(), tenFlow.data_ptr(), grad_in.data_ptr())
        if ctx.needs_input_grad[1]:
            grad_flow = torch.zeros_like(tenFlow)
            if tenFlow.numel() > 0:
                _launch("grad_flow", tenIn, tenFlow.numel(), *_sizes(tenIn),
                        tenIn.data_ptr(), tenFlow.data_ptr(), grad_out.data_ptr(), grad_flow.data_ptr())
        return grad_in, grad_flow


def sum_splat_cupy(tenIn: Tensor, tenFlow: Tensor) -> Tensor:
    """Same result as `sum_splat_torch` (up to atomic summation order) for CUDA float32/float64."""
    if not tenIn.is_cuda or tenIn.dtype not in CUDA_TYPES or tenFlow.dtype != tenIn.dtype:
        raise ValueError(
            f"sum_splat_cupy needs CUDA float32/float64 input and flow of one dtype, "
            f"got {tenIn.device} {tenIn.dtype} / {tenFlow.dtype}"
        )
    return _SumSplatCuda.apply(tenIn, tenFlow)
