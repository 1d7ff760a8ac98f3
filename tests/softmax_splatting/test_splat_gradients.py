"""Autograd of the PyTorch splat against finite differences (float64, tiny inputs)."""

import pytest
import torch

from softmax_splatting import splat


def fractional_inputs(seed: int, with_metric: bool):
    """Flows whose targets sit 0.2..0.8 px away from integer positions, so weights are smooth."""
    generator = torch.Generator().manual_seed(seed)
    N, C, H, W = 1, 2, 4, 5
    image = torch.rand(N, C, H, W, generator=generator, dtype=torch.float64)
    whole = torch.randint(-1, 2, (N, 2, H, W), generator=generator).double()
    fraction = 0.2 + 0.6 * torch.rand(N, 2, H, W, generator=generator, dtype=torch.float64)
    flow = whole + fraction
    metric = 0.5 + torch.rand(N, 1, H, W, generator=generator, dtype=torch.float64) if with_metric else None
    return image, flow, metric


@pytest.mark.parametrize("mode", ["sum", "avg", "linear", "soft", "soft-addeps", "avg-clipeps"])
def test_gradcheck_input_flow_metric(mode):
    with_metric = mode.startswith(("linear", "soft"))
    image, flow, metric = fractional_inputs(seed=len(mode), with_metric=with_metric)
    inputs = [image.requires_grad_(), flow.requires_grad_()]
    if with_metric:
        inputs.append(metric.requires_grad_())

    def run(*tensors):
        return splat(tensors[0], tensors[1], tensors[2] if with_metric else None, mode=mode, backend="torch")

    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_flow_gradient_sign_by_hand():
    """Moving a source right by d moves d*value from its own pixel to the right neighbour; moving it
    down (Y exactly integer: the right derivative, as floor makes it) pushes its row's share out."""
    image = torch.zeros(1, 1, 1, 3, dtype=torch.float64)
    image[0, 0, 0, 1] = 5.0
    flow = torch.full((1, 2, 1, 3), 0.25, dtype=torch.float64)
    flow[:, 1] = 0.0
    flow.requires_grad_()
    out = splat(image, flow)
    out[0, 0, 0, 2].backward()
    assert flow.grad[0, 0, 0, 1].item() == 5.0
    assert flow.grad[0, 1, 0, 1].item() == -5.0 * 0.25
