"""Bounded-memory sequence denoising: the checkpointed reversal and its equality with one pass."""
from __future__ import annotations

import itertools

import pytest
import torch

from engine.inference.reversal import read_forward, repetitions_needed, states_readable
from engine.inference.sequence import denoise_frames, denoise_sequence, full_path_bytes, full_path_fits, stored_states
from models import build_model
from tests.models.test_stbn import VARIANTS
from utils.errors import UserError
from utils.gaussian import posterior_mean, scaled_prior


class _Tracked:
    """A recurrence state that counts how many of its kind are alive (CPython frees on last ref)."""

    alive = 0
    peak = 0

    def __init__(self, value: int) -> None:
        self.value = value
        _Tracked.alive += 1
        _Tracked.peak = max(_Tracked.peak, _Tracked.alive)

    def __del__(self) -> None:
        _Tracked.alive -= 1


def _reference_states(length: int) -> list[int]:
    """g[t] = 31 * g[t+1] + t + 1 (mod a prime), g[T] = 7: order-sensitive, so any mix-up shows."""
    values = [0] * length
    later = 7
    for t in range(length - 1, -1, -1):
        later = (31 * later + t + 1) % 1_000_003
        values[t] = later
    return values


@pytest.mark.parametrize("length,slots", [(1, 1), (2, 1), (2, 2), (7, 2), (9, 3), (10, 3), (40, 4), (85, 7)])
def test_read_forward_yields_every_state_in_order_within_budget(length, slots):
    calls: dict[int, int] = {}

    def step(t, later):
        calls[t] = calls.get(t, 0) + 1
        return _Tracked((31 * (7 if later is None else later.value) + t + 1) % 1_000_003)

    _Tracked.alive = _Tracked.peak = 0
    seen = []
    for t, state in read_forward(step, length, slots):
        seen.append((t, state.value))
        del state
    assert seen == list(enumerate(_reference_states(length)))
    # `slots` kept states, plus the one being computed and the one the consumer still holds.
    assert _Tracked.peak <= slots + 2
    assert max(calls.values()) <= repetitions_needed(length, slots)
    assert _Tracked.alive == 0


def _fewest_steps(length: int, slots: int, memo: dict) -> int:
    """Exhaustive search over every split of the checkpointing recursion (the optimum to match)."""
    if length <= slots:
        return length
    if slots == 0:
        return 10**9
    key = (length, slots)
    if key not in memo:
        memo[key] = min((length - deep) + _fewest_steps(deep, slots - 1, memo)
                        + _fewest_steps(length - deep - 1, slots, memo) for deep in range(length))
    return memo[key]


def _count_steps(length: int, slots: int) -> int:
    total = itertools.count()

    def step(t, later):
        next(total)
        return t

    for _ in read_forward(step, length, slots):
        pass
    return next(total)


def test_binomial_capacity():
    # N(s, r) = C(s + r, s) - 1: one sweep reads `slots` states; one slot re-reads from the end.
    assert [states_readable(s, 1) for s in (1, 2, 5)] == [1, 2, 5]
    assert [states_readable(1, r) for r in (1, 2, 5)] == [1, 2, 5]
    assert states_readable(7, 3) == 119 and states_readable(6, 3) == 83
    assert repetitions_needed(85, 7) == 3 and repetitions_needed(85, 85) == 1


def test_step_count_is_the_optimum():
    memo: dict = {}
    for length, slots in [(5, 2), (13, 3), (29, 3), (40, 5), (61, 4)]:
        assert _count_steps(length, slots) == _fewest_steps(length, slots, memo)
    # The Set8 case: 85 frames with 7 kept states cost 213 backward steps instead of 85 * 86 / 2.
    assert _count_steps(85, 7) == 213


# ---------------------------------------------------------------- the sequence denoiser

SIGMA = 30 / 255


@pytest.fixture(scope="module")
def tiny_model():
    """A tiny STBN (8 channels) with fixed random weights and real (DIS) flows between frames."""
    torch.manual_seed(0)
    model = build_model("bdc_2_unify", num_channels=8, num_resblocks=2, flow="dis").eval()
    return model


def _moving_clip(length: int, height: int = 32, width: int = 48) -> torch.Tensor:
    """A smooth texture shifting 2 px per frame plus noise, so DIS finds non-zero flows."""
    generator = torch.Generator().manual_seed(length)
    texture = torch.nn.functional.interpolate(torch.rand(1, 3, height // 4, (width + 2 * length) // 4 + 1,
                                                         generator=generator),
                                              scale_factor=4, mode="bilinear", align_corners=False)[0]
    clean = torch.stack([texture[:, :height, 2 * t:2 * t + width] for t in range(length)])
    return clean + SIGMA * torch.randn(clean.shape, generator=generator)


def _one_pass_by_hand(model, noisy):
    nmap = torch.full_like(noisy, torch.tensor(SIGMA, dtype=torch.float32).item())
    with torch.no_grad():
        out, _ = model(noisy[None], nmap[None])
    return posterior_mean(out, noisy[None], nmap[0, 0, 0, 0].item())[0].clamp(0, 1)


@pytest.mark.parametrize("length,slots", [(1, 2), (2, 2), (7, 2), (7, 3)])
def test_bounded_path_equals_one_pass(tiny_model, length, slots):
    noisy = _moving_clip(length)
    expected = _one_pass_by_hand(tiny_model, noisy)
    state_bytes = 4 * 8 * 32 * 48
    full = denoise_sequence(tiny_model, noisy, SIGMA, memory="full")
    bounded = denoise_sequence(tiny_model, noisy, SIGMA, memory="bounded", state_budget=slots * state_bytes)
    assert full.shape == bounded.shape == (length, 3, 32, 48)
    assert torch.equal(full, expected)
    assert (bounded - full).abs().max().item() < 1e-5
    # Not a trivial output: the denoiser changed the noisy frames and stayed in [0, 1].
    assert (bounded - noisy.clamp(0, 1)).abs().mean().item() > 1e-3
    assert 0.0 <= bounded.min().item() and bounded.max().item() <= 1.0


def test_bounded_path_streams_frames_as_they_finish(tiny_model, monkeypatch):
    """The first frame comes out after one forward step, before the forward direction has run."""
    noisy = _moving_clip(6)
    forward_steps = []
    step = tiny_model.step

    def counting(direction, *args):
        if direction == "forward":
            forward_steps.append(1)
        return step(direction, *args)

    monkeypatch.setattr(tiny_model, "step", counting)
    frames = denoise_frames(tiny_model, noisy, SIGMA, memory="bounded", state_budget=2 * 4 * 8 * 32 * 48)
    t, first = next(frames)
    assert t == 0 and first.shape == (3, 32, 48) and len(forward_steps) == 1
    assert [t for t, _ in frames] == [1, 2, 3, 4, 5] and len(forward_steps) == 6


def test_bounded_path_reads_frames_lazily(tiny_model):
    """A plain list of frames (e.g. a lazy reader) works like a tensor."""
    noisy = _moving_clip(3)
    from_tensor = denoise_sequence(tiny_model, noisy, SIGMA, memory="bounded")
    from_list = denoise_sequence(tiny_model, list(noisy), SIGMA, memory="bounded")
    assert torch.equal(from_tensor, from_list)


def test_state_count_and_auto_choice(tiny_model):
    frame = torch.zeros(3, 540, 960)
    state = 4 * 8 * 540 * 960
    assert stored_states(tiny_model, frame, 85, state_budget=5 * state) == 5
    assert stored_states(tiny_model, frame, 3, state_budget=5 * state) == 3
    assert stored_states(tiny_model, frame, 85, state_budget=0) == 2
    # 85 frames keep 2 x 8 hidden channels + 24 buffers each: 85 * 40 floats per pixel.
    assert full_path_bytes(tiny_model, frame, 85) == 4 * 540 * 960 * (85 * 40 + 12 * 8)
    assert full_path_fits(tiny_model, torch.zeros(2, 3, 8, 8))


def test_bad_memory_mode_is_a_user_error(tiny_model):
    with pytest.raises(UserError, match="--memory"):
        denoise_sequence(tiny_model, torch.zeros(2, 3, 8, 8), SIGMA, memory="half")


def test_cuda_out_of_memory_falls_back_to_bounded(tiny_model, monkeypatch, capsys):
    import engine.inference.sequence as inference

    def out_of_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    noisy = _moving_clip(3)
    expected = denoise_sequence(tiny_model, noisy, SIGMA, memory="full")
    monkeypatch.setattr(inference, "_one_pass", out_of_memory)
    fallback = denoise_sequence(tiny_model, noisy, SIGMA, memory="full")
    assert (fallback - expected).abs().max().item() < 1e-5
    assert "switching to --memory bounded" in capsys.readouterr().err


def test_bounded_path_in_row_bands_equals_one_pass(tiny_model, monkeypatch):
    """Steps computed in bands of 3 rows (halo 9) give the one-pass numbers."""
    monkeypatch.setattr("engine.inference.sequence.STEP_BAND_PIXELS", 48 * (3 + 2 * 9))
    noisy = _moving_clip(4)
    full = denoise_sequence(tiny_model, noisy, SIGMA, memory="full")
    bounded = denoise_sequence(tiny_model, noisy, SIGMA, memory="bounded", state_budget=2 * 4 * 8 * 32 * 48)
    assert (bounded - full).abs().max().item() < 1e-5
    assert (bounded - noisy.clamp(0, 1)).abs().mean().item() > 1e-3


def test_replacing_step_changes_one_pass_and_bounded_alike(tiny_model, monkeypatch):
    """Both schedules run `STBN.step`: an edited step (here: a damped state) changes both outputs,
    and they still agree, so an ablation edited there is what either path evaluates."""
    from models.stbn import STBN

    noisy = _moving_clip(5)
    budget = 2 * 4 * 8 * 32 * 48
    before = denoise_sequence(tiny_model, noisy, SIGMA, memory="full")
    original = STBN.step

    def damped(self, *args, **kwargs):
        return original(self, *args, **kwargs).mul_(0.5)

    monkeypatch.setattr(STBN, "step", damped)
    full = denoise_sequence(tiny_model, noisy, SIGMA, memory="full")
    bounded = denoise_sequence(tiny_model, noisy, SIGMA, memory="bounded", state_budget=budget)
    assert (full - before).abs().mean().item() > 1e-3
    assert (bounded - full).abs().max().item() < 1e-5


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_bounded_path_equals_one_pass_for_every_variant(variant):
    torch.manual_seed(0)
    model = build_model("bdc_2_unify", num_channels=8, num_resblocks=2, flow="dis", **VARIANTS[variant]).eval()
    noisy = _moving_clip(3, 24, 32)
    full = denoise_sequence(model, noisy, SIGMA, memory="full")
    bounded = denoise_sequence(model, noisy, SIGMA, memory="bounded", state_budget=2 * 4 * 8 * 24 * 32)
    assert (bounded - full).abs().max().item() < 1e-5
    assert (full - noisy.clamp(0, 1)).abs().mean().item() > 1e-3


def test_the_raw_model_denoises_through_both_paths_with_its_mean():
    """The raw configuration (4 packed channels, mean-only head): one pass and bounded agree, and the
    estimate is the predicted mean clamped to [0, 1] (no posterior: the head has no covariance)."""
    torch.manual_seed(0)
    model = build_model("BR_d_c_raw", num_channels=8, num_resblocks=2, flow="zero").eval()
    noisy = torch.rand(4, 4, 16, 24, generator=torch.Generator().manual_seed(2))
    full = denoise_sequence(model, noisy, 0.05, memory="full")
    bounded = denoise_sequence(model, noisy, 0.05, memory="bounded", state_budget=2 * 4 * 8 * 16 * 24)
    with torch.no_grad():
        mean = model(noisy[None])[0][0].clamp(0, 1)
    assert full.shape == (4, 4, 16, 24) and torch.equal(full, mean)
    assert (bounded - full).abs().max().item() < 1e-5


def test_prior_scale_scales_the_factor_on_both_paths(tiny_model):
    """prior_scale k: the posterior of the output whose covariance factor is k times the model's;
    a colour matrix S: the posterior of the prior S^T A^T A S."""
    noisy = _moving_clip(4)
    nmap = torch.full_like(noisy, torch.tensor(SIGMA, dtype=torch.float32).item())
    with torch.no_grad():
        out, _ = tiny_model(noisy[None], nmap[None])
    by_hand_out = out.clone()
    by_hand_out[:, :, 3:] *= 0.4
    expected = posterior_mean(by_hand_out, noisy[None], nmap[0, 0, 0, 0].item())[0].clamp(0, 1)
    full = denoise_sequence(tiny_model, noisy, SIGMA, memory="full", prior_scale=0.4)
    bounded = denoise_sequence(tiny_model, noisy, SIGMA, memory="bounded", prior_scale=0.4)
    assert torch.equal(full, expected)
    assert (bounded - full).abs().max().item() < 1e-5
    assert (full - denoise_sequence(tiny_model, noisy, SIGMA, memory="full")).abs().max().item() > 1e-3
    # A colour matrix S: the posterior of `scaled_prior(out, S)`, the same on both memory paths.
    matrix = torch.tensor([[0.6, 0.2, 0.0], [0.2, 1.1, -0.1], [0.0, -0.1, 0.3]], dtype=torch.float64)
    expected = posterior_mean(scaled_prior(out, matrix), noisy[None], nmap[0, 0, 0, 0].item())[0].clamp(0, 1)
    full = denoise_sequence(tiny_model, noisy, SIGMA, memory="full", prior_scale=matrix)
    bounded = denoise_sequence(tiny_model, noisy, SIGMA, memory="bounded", prior_scale=matrix)
    assert torch.equal(full, expected)
    assert (bounded - full).abs().max().item() < 1e-5
    assert (full - denoise_sequence(tiny_model, noisy, SIGMA, memory="full", prior_scale=0.4)).abs().max() > 1e-3
