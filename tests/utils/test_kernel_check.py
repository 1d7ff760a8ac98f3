"""GPU kernels check themselves: the decision logic, tested on the CPU by injecting kernels."""
import pytest
import torch

import models.cost_volume as cost_volume_module
import softmax_splatting.splat_modes as splat_modes
from softmax_splatting import splat
from softmax_splatting.splat_torch import sum_splat_torch
from utils import errors, kernel_check
from utils.kernel_check import kernel_trusted, kernel_verdicts


@pytest.fixture(autouse=True)
def fresh_verdicts(monkeypatch):
    monkeypatch.setattr(kernel_check, "_VERDICTS", {})
    monkeypatch.setattr(errors, "_warned", set())


def _probe():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 5, 6, generator=generator), torch.randn(2, 3, 5, 6, generator=generator)


def _reference(a, b):
    return a * b + a.roll(1, dims=-1)


def test_an_agreeing_kernel_is_trusted_once_per_device_and_dtype(capsys):
    calls = []

    def kernel(a, b):
        calls.append(1)
        return _reference(a, b)

    cpu = torch.device("cpu")
    assert kernel_trusted("k", kernel, _reference, _probe, cpu, torch.float32)
    assert kernel_trusted("k", kernel, _reference, _probe, cpu, torch.float32)
    assert len(calls) == 1  # decided once
    assert capsys.readouterr().err == ""
    assert kernel_verdicts() == {"k on cpu float32": "cupy"}


@pytest.mark.parametrize("wrong, reason", [
    (lambda a, b: _reference(a, b) + 1e-3, "output differs by 0.001"),
    (lambda a, b: _reference(a, b.detach()), "gradient 1: missing"),  # backward wrong: no gradient for b
    (lambda a, b: _reference(a, b) * float("nan"), "output is not finite"),
    (lambda a, b: (_ for _ in ()).throw(RuntimeError("illegal memory access")), "raised RuntimeError"),
])
def test_a_disagreeing_kernel_falls_back_with_one_warning(capsys, wrong, reason):
    cpu = torch.device("cpu")
    assert not kernel_trusted("k", wrong, _reference, _probe, cpu, torch.float32)
    assert not kernel_trusted("k", wrong, _reference, _probe, cpu, torch.float32)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and reason in err and "using the PyTorch path" in err
    assert kernel_verdicts() == {"k on cpu float32": "torch"}


def test_a_tiny_rounding_difference_is_within_tolerance():
    cpu = torch.device("cpu")
    assert kernel_trusted("k", lambda a, b: _reference(a, b) * (1 + 1e-6), _reference, _probe, cpu, torch.float32)


def _pretend_cupy(monkeypatch, module, available_name):
    monkeypatch.setattr(module, "_on_cuda", lambda tensor: True)
    monkeypatch.setattr(module, available_name, lambda index=None: True)


def test_cost_volume_uses_the_pytorch_path_when_the_kernel_is_wrong(monkeypatch, capsys):
    _pretend_cupy(monkeypatch, cost_volume_module, "cupy_cost_volume_available")
    monkeypatch.setattr(cost_volume_module._CupyCostVolume, "apply",
                        lambda a, b: cost_volume_module.cost_volume_torch(a, b) + 0.5)
    first, second = torch.randn(1, 4, 6, 7), torch.randn(1, 4, 6, 7)
    out = cost_volume_module.cost_volume(first, second)
    assert torch.equal(out, cost_volume_module.cost_volume_torch(first, second))
    assert "cost volume: the CuPy kernel disagrees" in capsys.readouterr().err


def test_cost_volume_uses_a_kernel_that_agrees(monkeypatch):
    _pretend_cupy(monkeypatch, cost_volume_module, "cupy_cost_volume_available")
    used = []

    def right(a, b):
        used.append(1)
        return cost_volume_module.cost_volume_torch(a, b)

    monkeypatch.setattr(cost_volume_module._CupyCostVolume, "apply", right)
    cost_volume_module.cost_volume(torch.randn(1, 4, 6, 7), torch.randn(1, 4, 6, 7))
    assert len(used) == 2  # the check, then the real call


def test_splatting_uses_the_pytorch_path_when_the_kernel_is_wrong(monkeypatch, capsys):
    _pretend_cupy(monkeypatch, splat_modes, "cupy_splat_available")
    monkeypatch.setattr(splat_modes, "sum_splat_cupy", lambda values, flow: sum_splat_torch(values, flow).flip(-1))
    values, flow = torch.randn(1, 2, 6, 7), torch.randn(1, 2, 6, 7)
    assert torch.equal(splat(values, flow, mode="sum"), sum_splat_torch(values, flow))
    assert "sum splat: the CuPy kernel disagrees" in capsys.readouterr().err
