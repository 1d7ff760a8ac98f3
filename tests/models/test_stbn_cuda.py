"""STBN on CUDA gives the CPU's numbers (float32, TF32 off), through PWC-Net, the model and the
bounded denoiser. Runs only where CUDA exists (benchmarks/gpu_check.sh runs it)."""
from __future__ import annotations

import pytest
import torch

from engine.inference.sequence import denoise_sequence
from models import build_model
from models.flow import estimate_flow
from models.pwc import PWCNet
from tests.golden import fill_official

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture
def no_tf32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.usefixtures("no_tf32")
def test_pwc_flow_on_cuda_equals_cpu():
    """PWC-Net with the golden fill (non-zero flows) through the authors' wrapper, CuPy or PyTorch."""
    pwcnet = PWCNet().eval()
    fill_official(pwcnet, prefix="pwcnet.")
    frames = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cpu = estimate_flow(pwcnet, frames[:1], frames[1:])
        gpu = estimate_flow(pwcnet.cuda(), frames[:1].cuda(), frames[1:].cuda()).cpu()
    assert cpu.abs().max().item() > 1e-3
    assert (gpu - cpu).abs().max().item() < 1e-4 * cpu.abs().max().item()


@pytest.mark.usefixtures("no_tf32")
def test_model_output_on_cuda_equals_cpu():
    """Zero flow, so that no nearest-neighbour warp sits on a rounding edge between devices."""
    model = build_model("bdc_2_unify", num_resblocks=2, num_channels=16, flow="zero").eval()
    seqn = torch.rand(1, 4, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    nmap = torch.full_like(seqn, 0.1)
    with torch.no_grad():
        cpu, _ = model(seqn, nmap)
        gpu, _ = model.cuda()(seqn.cuda(), nmap.cuda())
    scale = cpu.abs().max().item()
    assert (gpu.cpu() - cpu).abs().max().item() < 1e-4 * scale


@pytest.mark.usefixtures("no_tf32")
def test_bounded_equals_one_pass_on_cuda():
    model = build_model("bdc_2_unify", num_resblocks=2, num_channels=16, flow="zero").cuda().eval()
    noisy = torch.rand(6, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    full = denoise_sequence(model, noisy, 0.1, memory="full")
    bounded = denoise_sequence(model, noisy, 0.1, memory="bounded", state_budget=2 * 4 * 16 * 48 * 64)
    assert (bounded - full).abs().max().item() < 1e-5
