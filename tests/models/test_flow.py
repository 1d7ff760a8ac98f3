"""Flow wrapper maths (mock network), clip pair flows, DIS flow on a known shift, flow switch."""
import cv2
import numpy as np
import pytest
import torch

from models.flow import dis_flow, estimate_flow, make_flow_fn, pair_flows, zero_flow


class ConstantFlowNet(torch.nn.Module):
    """Stands in for PWC-Net: records its input size, returns a constant 1/20-unit flow (u, v)."""

    def __init__(self, u: float, v: float) -> None:
        super().__init__()
        self.uv = torch.nn.Parameter(torch.tensor([u, v]))
        self.seen = []

    def forward(self, first, second):
        self.seen.append((tuple(first.shape), tuple(second.shape)))
        n, _, h, w = first.shape
        return self.uv.view(1, 2, 1, 1).expand(n, 2, h // 4, w // 4)


def test_wrapper_resizes_to_64_and_rescales_per_axis():
    net = ConstantFlowNet(0.5, -0.25)
    flow = estimate_flow(net, torch.rand(2, 3, 48, 80), torch.rand(2, 3, 48, 80))
    assert net.seen == [((2, 3, 64, 128), (2, 3, 64, 128))]
    assert flow.shape == (2, 2, 48, 80)
    # x: 20 * 0.5 * 80/128 = 6.25 ; y: 20 * -0.25 * 48/64 = -3.75
    torch.testing.assert_close(flow[:, 0], torch.full((2, 48, 80), 6.25))
    torch.testing.assert_close(flow[:, 1], torch.full((2, 48, 80), -3.75))


def test_wrapper_resamples_inputs_bilinearly():
    class Probe(torch.nn.Module):
        def forward(self, first, second):
            self.first = first
            return first.new_zeros(first.shape[0], 2, first.shape[2] // 4, first.shape[3] // 4)

    probe = Probe()
    ramp = torch.linspace(0, 1, 40).view(1, 1, 1, 40).expand(1, 3, 30, 40)
    estimate_flow(probe, ramp, ramp)
    assert probe.first.shape == (1, 3, 64, 64)
    # align_corners=False: output column 1 samples source x = 1.5 * 40/64 - 0.5 = 0.4375
    # (align_corners=True would sample 39/63 = 0.619).
    assert probe.first[0, 0, 0, 1].item() == pytest.approx(0.4375 / 39, rel=1e-5)
    torch.testing.assert_close(probe.first[:, :, 0], probe.first[:, :, 63])


def test_pair_flows_order_batching_and_chunks():
    calls = []

    def tag_flow(im1, im2):  # channel 0 tags the first frame, channel 1 the second
        calls.append(im1.shape[0])
        return torch.cat([im1[:, :1], im2[:, :1]], dim=1)

    seq = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1, 1, 1).expand(2, 5, 3, 4, 6)
    backward, forward = pair_flows(tag_flow, seq, chunk=3)
    assert calls == [6, 6, 4]  # 8 pairs in chunks of 3: both directions batched per call
    assert backward.shape == forward.shape == (2, 4, 2, 4, 6)
    frame = seq[:, :, 0, 0, 0]
    torch.testing.assert_close(backward[:, :, 0, 0, 0], frame[:, :-1])
    torch.testing.assert_close(backward[:, :, 1, 0, 0], frame[:, 1:])
    torch.testing.assert_close(forward[:, :, 0, 0, 0], frame[:, 1:])
    torch.testing.assert_close(forward[:, :, 1, 0, 0], frame[:, :-1])


def test_pair_flows_of_a_single_frame_are_empty():
    backward, forward = pair_flows(zero_flow, torch.rand(2, 1, 3, 4, 6))
    assert backward.shape == forward.shape == (2, 0, 2, 4, 6)


def _texture(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    noise = rng.random((height, width)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0) * 3.0 - 0.5


def test_dis_flow_recovers_a_translation():
    base = _texture(96, 128)
    shift_x, shift_y = 3, -2
    moved = np.roll(base, (shift_y, shift_x), axis=(0, 1))  # moved(p) = base(p - s)
    def to_t(a):
        return torch.from_numpy(np.repeat(a[None, None], 3, axis=1).copy())
    # flow(base, moved) backward-warps moved onto base: base(p) = moved(p + s).
    flow = dis_flow(to_t(base).double(), to_t(moved).double())
    assert flow.shape == (1, 2, 96, 128) and flow.dtype == torch.float64
    interior = flow[0, :, 16:-16, 16:-16]
    assert (interior[0] - shift_x).abs().median() < 0.5
    assert (interior[1] - shift_y).abs().median() < 0.5
    assert (interior[0] - shift_x).abs().mean() < 0.5


def test_zero_flow_and_flow_switch():
    im = torch.rand(3, 3, 8, 10)
    assert torch.equal(zero_flow(im, im), torch.zeros(3, 2, 8, 10))
    assert make_flow_fn("zero") is zero_flow
    assert make_flow_fn("dis") is dis_flow
    with pytest.raises(ValueError, match="unknown flow kind"):
        make_flow_fn("raft")
    with pytest.raises(ValueError, match="needs a PWCNet"):
        make_flow_fn("pwc")


def test_pwc_flow_fn_grad_switch():
    net = ConstantFlowNet(0.1, 0.2)
    im = torch.rand(1, 3, 64, 64)
    assert not make_flow_fn("pwc", net)(im, im).requires_grad
    assert make_flow_fn("pwc", net, requires_grad=True)(im, im).requires_grad
    with torch.no_grad():
        assert not make_flow_fn("pwc", net, requires_grad=True)(im, im).requires_grad


@pytest.mark.slow
@pytest.mark.parametrize("height,width", [(12, 64), (15, 300), (11, 11), (1, 1), (8, 40), (40, 8)])
def test_dis_flow_handles_frames_below_its_minimum(height, width):
    """OpenCV's DIS crashes (segmentation fault) on 12-15-row frames of 64+ columns and raises below
    12x12: such frames are padded, so a small clip still gets a flow of its own size."""
    import subprocess
    import sys

    code = ("import torch; from models.flow import dis_flow; "
            f"a = torch.rand(2, 3, {height}, {width}, generator=torch.Generator().manual_seed(0)); "
            "f = dis_flow(a, torch.roll(a, 1, dims=3)); assert f.shape == (2, 2, a.shape[2], a.shape[3]); "
            "assert torch.isfinite(f).all(); print('ok')")
    from tests.engine.synthetic import REPO_ROOT, SUBPROCESS_ENV
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=SUBPROCESS_ENV, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-500:]
