"""Forward-splatting semantics on tiny hand-computed cases (PyTorch backend, CPU)."""

import math

import pytest
import torch
import torch.nn.functional as F

from softmax_splatting import splat


def constant_flow(N: int, H: int, W: int, fx: float, fy: float, dtype=torch.float64) -> torch.Tensor:
    flow = torch.empty(N, 2, H, W, dtype=dtype)
    flow[:, 0], flow[:, 1] = fx, fy
    return flow


def bilinear_gather(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """out(q) = image(q + flow(q)) by bilinear interpolation, zero outside: an independent reference."""
    N, _, H, W = image.shape
    gy, gx = torch.meshgrid(torch.arange(H, dtype=image.dtype), torch.arange(W, dtype=image.dtype), indexing="ij")
    sx = (gx + flow[:, 0]) / (W - 1) * 2 - 1
    sy = (gy + flow[:, 1]) / (H - 1) * 2 - 1
    grid = torch.stack([sx, sy], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def test_integer_flow_is_an_exact_shift_with_zero_holes():
    image = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    flow = constant_flow(2, 5, 6, 2.0, -1.0)
    expected = torch.zeros_like(image)
    expected[:, :, 0:4, 2:6] = image[:, :, 1:5, 0:4]
    assert torch.equal(splat(image, flow, mode="sum"), expected)
    assert torch.equal(splat(image, flow, mode="avg"), expected)


def test_half_pixel_flow_splits_fifty_fifty():
    image = torch.zeros(1, 1, 3, 4)
    image[0, 0, 1, 1] = 4.0
    out = splat(image, constant_flow(1, 3, 4, 0.5, 0.0, torch.float32))
    expected = torch.zeros_like(image)
    expected[0, 0, 1, 1] = expected[0, 0, 1, 2] = 2.0
    assert torch.equal(out, expected)


def test_fractional_flow_bilinear_weights():
    image = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    image[0, 0, 1, 1] = 8.0
    out = splat(image, constant_flow(1, 4, 4, 0.25, 0.5))
    expected = torch.zeros_like(image)
    expected[0, 0, 1, 1] = 8 * 0.75 * 0.5
    expected[0, 0, 1, 2] = 8 * 0.25 * 0.5
    expected[0, 0, 2, 1] = 8 * 0.75 * 0.5
    expected[0, 0, 2, 2] = 8 * 0.25 * 0.5
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)


def test_sum_is_preserved_when_all_mass_stays_inside():
    torch.manual_seed(0)
    image = torch.rand(1, 2, 8, 9, dtype=torch.float64)
    flow = torch.rand(1, 2, 8, 9, dtype=torch.float64) * 2 - 1
    image[:, :, [0, -1], :] = 0  # sources that could leave the image carry nothing
    image[:, :, :, [0, -1]] = 0
    out = splat(image, flow)
    torch.testing.assert_close(out.sum(dim=(2, 3)), image.sum(dim=(2, 3)), rtol=1e-12, atol=0)


def test_mass_leaving_the_image_is_dropped():
    image = torch.zeros(1, 1, 2, 3)
    image[0, 0, 0, 2] = 6.0  # right border pixel, half of it moves out
    out = splat(image, constant_flow(1, 2, 3, 0.5, 0.0, torch.float32))
    assert out.sum().item() == 3.0
    assert out[0, 0, 0, 2].item() == 3.0
    far = splat(torch.rand(1, 2, 3, 3), constant_flow(1, 3, 3, 10.0, 0.0, torch.float32), mode="avg")
    assert torch.equal(far, torch.zeros_like(far))


def two_sources_on_one_target():
    """Row of 3 pixels: x=0 (value 2) and x=2 (value 6) both land on x=1; x=1 leaves the image."""
    image = torch.tensor([[[[2.0, 5.0, 6.0]]]], dtype=torch.float64)
    flow = torch.zeros(1, 2, 1, 3, dtype=torch.float64)
    flow[0, 0, 0] = torch.tensor([1.0, 10.0, -1.0])
    metric = torch.tensor([[[[0.5, 3.0, 1.5]]]], dtype=torch.float64)
    return image, flow, metric


@pytest.mark.parametrize("mode, expected_middle", [
    ("sum", 8.0),
    ("avg", 4.0),
    ("linear", (0.5 * 2 + 1.5 * 6) / (0.5 + 1.5)),
    ("soft", (math.exp(0.5) * 2 + math.exp(1.5) * 6) / (math.exp(0.5) + math.exp(1.5))),
])
def test_normalised_modes_by_hand(mode, expected_middle):
    image, flow, metric = two_sources_on_one_target()
    out = splat(image, flow, metric if mode in ("linear", "soft") else None, mode=mode)
    expected = torch.tensor([[[[0.0, expected_middle, 0.0]]]], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("old, new", [("summation", "sum"), ("average", "avg"), ("softmax", "soft")])
def test_florn_mode_names_are_aliases(old, new):
    image, flow, metric = two_sources_on_one_target()
    metric = metric if new == "soft" else None
    assert torch.equal(splat(image, flow, metric, mode=old), splat(image, flow, metric, mode=new))


def lone_weak_source():
    """x=0 (Z=-20, value 3) lands alone on x=1; x=2 (Z=5) lands on x=0, so the shift m is 5."""
    image = torch.tensor([[[[3.0, 0.0, 7.0]]]], dtype=torch.float64)
    flow = torch.zeros(1, 2, 1, 3, dtype=torch.float64)
    flow[0, 0, 0] = torch.tensor([1.0, 10.0, -2.0])
    metric = torch.tensor([[[[-20.0, 0.0, 5.0]]]], dtype=torch.float64)
    return image, flow, metric


@pytest.mark.parametrize("suffix, expected_middle", [
    ("", 3.0),
    ("-zeroeps", 3.0),
    ("-addeps", 3 * math.exp(-20) / (math.exp(-20) + 1e-7)),
    ("-clipeps", 3 * math.exp(-20) / 1e-7),
])
def test_normaliser_rules_match_upstream_formulas(suffix, expected_middle):
    image, flow, metric = lone_weak_source()
    out = splat(image, flow, metric, mode="soft" + suffix)
    assert out[0, 0, 0, 1].item() == pytest.approx(expected_middle, rel=1e-12)
    assert out[0, 0, 0, 0].item() == pytest.approx(7.0, rel=1e-6)
    assert out[0, 0, 0, 2].item() == 0.0


def test_soft_mode_does_not_overflow_on_large_metrics():
    image = torch.tensor([[[[2.0, 5.0, 6.0]]]])
    flow = torch.zeros(1, 2, 1, 3)
    flow[0, 0, 0] = torch.tensor([1.0, 10.0, -1.0])
    metric = torch.tensor([[[[1000.0, 0.0, 999.0]]]])
    out = splat(image, flow, metric, mode="soft")
    expected_middle = (math.e * 2 + 6) / (math.e + 1)
    assert out[0, 0, 0, 1].item() == pytest.approx(expected_middle, rel=1e-6)


def test_non_finite_flow_sources_contribute_nothing():
    torch.manual_seed(1)
    image = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    flow = torch.rand(1, 2, 5, 5, dtype=torch.float64) * 2 - 1
    bad = [(0, 0, 1, 1, float("nan")), (0, 1, 2, 3, float("inf")), (0, 0, 4, 0, float("-inf")), (0, 1, 3, 3, 1e30)]
    broken = flow.clone().requires_grad_(True)
    with torch.no_grad():
        for n, k, y, x, value in bad:
            broken[n, k, y, x] = value
    image_without = image.clone()
    for n, _, y, x, _ in bad:
        image_without[n, :, y, x] = 0
    for mode in ("sum", "avg"):
        out = splat(image, broken, mode=mode)
        assert torch.isfinite(out).all()
        reference = splat(image_without, flow, mode="sum")
        if mode == "sum":
            torch.testing.assert_close(out, reference, rtol=1e-14, atol=0)
    splat(image, broken, mode="avg").sum().backward()
    assert torch.isfinite(broken.grad).all()
    for n, _, y, x, _ in bad:
        assert broken.grad[n, :, y, x].abs().sum().item() == 0.0


@pytest.mark.parametrize("mode", ["linear", "soft"])
def test_non_finite_metric_sources_contribute_nothing(mode):
    image, flow, metric = two_sources_on_one_target()
    metric = metric.clone()
    metric[0, 0, 0, 2] = float("nan")
    flow_without = flow.clone()
    flow_without[0, 0, 0, 2] = 100.0  # the same source, sent out of the image instead
    metric_without = metric.clone()
    metric_without[0, 0, 0, 2] = 1.0
    out = splat(image, flow, metric, mode=mode)
    torch.testing.assert_close(out, splat(image, flow_without, metric_without, mode=mode), rtol=1e-14, atol=0)
    assert out[0, 0, 0, 1].item() == pytest.approx(2.0, rel=1e-14)


def test_constant_flow_splat_equals_backward_warp_by_negated_flow_on_interior():
    torch.manual_seed(2)
    image = torch.rand(1, 3, 12, 14, dtype=torch.float64)
    fx, fy = 0.3, -1.7
    splatted = splat(image, constant_flow(1, 12, 14, fx, fy))
    warped = bilinear_gather(image, constant_flow(1, 12, 14, -fx, -fy))
    torch.testing.assert_close(splatted[..., 3:-3, 3:-3], warped[..., 3:-3, 3:-3], rtol=1e-12, atol=1e-12)


def test_sum_splat_is_the_adjoint_of_bilinear_backward_warp():
    """<splat(I, F), J> = <I, gather(J, F)> for any flow field, borders included."""
    torch.manual_seed(3)
    image = torch.rand(2, 3, 7, 9, dtype=torch.float64)
    other = torch.rand(2, 3, 7, 9, dtype=torch.float64)
    flow = torch.randn(2, 2, 7, 9, dtype=torch.float64) * 2
    left = (splat(image, flow) * other).sum()
    right = (image * bilinear_gather(other, flow)).sum()
    assert left.item() == pytest.approx(right.item(), rel=1e-12)


def test_half_precision_is_computed_in_float32_and_cast_back():
    torch.manual_seed(4)
    image = torch.rand(1, 2, 6, 6)
    flow = torch.rand(1, 2, 6, 6) * 3 - 1.5
    out = splat(image.half(), flow.half(), mode="avg")
    assert out.dtype == torch.float16
    reference = splat(image.half().float(), flow.half().float(), mode="avg")
    torch.testing.assert_close(out.float(), reference, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="bogus"), "unknown"),
    (dict(mode="avg-foo"), "unknown"),
    (dict(mode="sum-addeps"), "no suffix"),
    (dict(mode="soft"), "needs a metric"),
    (dict(mode="avg", tenMetric=torch.zeros(1, 1, 3, 4)), "takes no metric"),
    (dict(tenFlow=torch.zeros(1, 2, 4, 3)), "flow must be"),
    (dict(mode="linear", tenMetric=torch.zeros(1, 2, 3, 4)), "metric must be"),
    (dict(backend="numba"), "backend"),
])
def test_misuse_is_reported(kwargs, message):
    args = dict(tenIn=torch.zeros(1, 2, 3, 4), tenFlow=torch.zeros(1, 2, 3, 4))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        splat(**args)
