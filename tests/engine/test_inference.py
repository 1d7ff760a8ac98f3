"""Bounded-memory sequence denoising: the checkpointed reversal and its equality with one pass."""
from __future__ import annotations

import itertools

import pytest

from engine.reversal import read_forward, repetitions_needed, states_readable


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
