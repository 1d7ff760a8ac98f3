"""Cost volume: definition (channel order, mean, zero outside), gradients, CUDA kernel maths
(compiled as C++ on the CPU), CuPy parity on GPU."""
import ctypes
import shutil
import subprocess

import pytest
import torch

from models.cost_volume import _KERNEL_SOURCE, cost_volume, cost_volume_torch


def naive_cost_volume(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Literal per-pixel, per-displacement loop of the definition."""
    batch, channels, height, width = first.shape
    out = torch.zeros(batch, 81, height, width, dtype=first.dtype)
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            k = (dy + 4) * 9 + (dx + 4)
            for y in range(height):
                for x in range(width):
                    if 0 <= y + dy < height and 0 <= x + dx < width:
                        out[:, k, y, x] = (first[:, :, y, x] * second[:, :, y + dy, x + dx]).sum(1) / channels
    return out


def test_matches_the_literal_definition():
    gen = torch.Generator().manual_seed(0)
    # width 19 spans three 8-pixel tiles of the banded product, the last one partial
    first = torch.randn(2, 3, 6, 19, generator=gen)
    second = torch.randn(2, 3, 6, 19, generator=gen)
    torch.testing.assert_close(cost_volume_torch(first, second), naive_cost_volume(first, second),
                               rtol=1e-6, atol=1e-6)


def test_channel_index_is_dy_major():
    # second is a single spike at (y=5, x=6); first is all ones: channel (dy, dx) sees the spike
    # at pixel (5-dy, 6-dx) with value 1/C.
    first = torch.ones(1, 4, 11, 13)
    second = torch.zeros(1, 4, 11, 13)
    second[0, :, 5, 6] = 1.0
    out = cost_volume(first, second)
    assert out.shape == (1, 81, 11, 13)
    dy, dx = -3, 2
    k = (dy + 4) * 9 + (dx + 4)
    assert out[0, k, 5 - dy, 6 - dx] == pytest.approx(1.0)
    assert out[0, k].sum() == pytest.approx(1.0)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(1)
    first = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    second = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cost_volume, (first, second), fast_mode=True)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal"):
        cost_volume(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4))


# Runs the CUDA kernels' source as plain C++ with a 3-block x 4-thread "grid", so that the
# indexing, the bounds and the grid-stride loop are checked on machines without a GPU.
_CPU_HARNESS = """
struct Dim { unsigned x; };
static Dim blockIdx, threadIdx, blockDim = {4}, gridDim = {3};
#define __global__
#define __restrict__
#define SCALAR double
%s
#define EACH_THREAD(call) \\
    for (unsigned bi = 0; bi < gridDim.x; ++bi) \\
        for (unsigned ti = 0; ti < blockDim.x; ++ti) { blockIdx.x = bi; threadIdx.x = ti; call; }
extern "C" void forward(long long n, int c, int h, int w, const double* a, const double* b, double* o)
{ EACH_THREAD(cost_volume_forward(n, c, h, w, a, b, o)) }
extern "C" void backward(long long n, int c, int h, int w, const double* a, const double* b,
                         const double* g, double* ga, double* gb)
{ EACH_THREAD(cost_volume_backward(n, c, h, w, a, b, g, ga, gb)) }
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_cuda_kernel_source_computes_the_same_as_pytorch(tmp_path):
    (tmp_path / "kernel.cpp").write_text(_CPU_HARNESS % _KERNEL_SOURCE)
    subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-o", str(tmp_path / "kernel.so"),
                    str(tmp_path / "kernel.cpp")], check=True, capture_output=True)
    lib = ctypes.CDLL(str(tmp_path / "kernel.so"))
    gen = torch.Generator().manual_seed(3)
    first, second = (torch.randn(2, 5, 7, 11, generator=gen, dtype=torch.float64, requires_grad=True)
                     for _ in range(2))
    grad = torch.randn(2, 81, 7, 11, generator=gen, dtype=torch.float64)
    out, grad_first, grad_second = (torch.zeros_like(grad), torch.zeros_like(first), torch.zeros_like(second))
    def ptr(t):
        return ctypes.c_void_p(t.data_ptr())
    dims = (ctypes.c_int(5), ctypes.c_int(7), ctypes.c_int(11))
    lib.forward(ctypes.c_longlong(out.numel()), *dims, ptr(first.detach()), ptr(second.detach()), ptr(out))
    lib.backward(ctypes.c_longlong(first.numel()), *dims, ptr(first.detach()), ptr(second.detach()),
                 ptr(grad), ptr(grad_first), ptr(grad_second))
    expected = cost_volume_torch(first, second)
    expected_first, expected_second = torch.autograd.grad(expected, (first, second), grad)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_first, expected_first, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_second, expected_second, rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cupy_kernel_matches_pytorch_forward_and_backward():
    pytest.importorskip("cupy")
    from models.cost_volume import _CupyCostVolume

    gen = torch.Generator().manual_seed(2)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
        first = torch.randn(2, 19, 13, 17, generator=gen, dtype=dtype).cuda().requires_grad_()
        second = torch.randn(2, 19, 13, 17, generator=gen, dtype=dtype).cuda().requires_grad_()
        grad = torch.randn(2, 81, 13, 17, generator=gen, dtype=dtype).cuda()
        out_k = _CupyCostVolume.apply(first, second)
        gk = torch.autograd.grad(out_k, (first, second), grad)
        out_t = cost_volume_torch(first, second)
        gt = torch.autograd.grad(out_t, (first, second), grad)
        torch.testing.assert_close(out_k, out_t, rtol=tol, atol=tol)
        torch.testing.assert_close(gk[0], gt[0], rtol=tol, atol=tol)
        torch.testing.assert_close(gk[1], gt[1], rtol=tol, atol=tol)
    tiny = [torch.randn(1, 3, 5, 6, generator=gen, dtype=torch.float64).cuda().requires_grad_()
            for _ in range(2)]
    assert torch.autograd.gradcheck(_CupyCostVolume.apply, tiny, fast_mode=True)
    half = first.detach().half()
    assert _CupyCostVolume.apply(half, half).dtype == torch.float16
    assert cost_volume(first, second).grad_fn.name().endswith("_CupyCostVolumeBackward")
