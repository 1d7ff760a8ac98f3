"""Read a backward recurrence front to back while holding only a few of its states.

STBN's backward direction computes g[T-1], g[T-2], ..., g[0] (each g[t] from g[t+1]), but a
streaming denoiser needs g[0], g[1], ... in the order the forward direction reaches them. Keeping
all T states costs memory that grows with the clip; recomputing everything from the end for each
frame costs T^2 steps. Binomial checkpointing (Griewank's "revolve") sits in between: with `slots`
states in memory and every state computed at most r times, N(slots, r) = C(slots + r, slots) - 1
states can be read in order, so r grows only like T^(1/slots).

Scheme for a range [lo, hi) whose right neighbour g[hi] (the seed) is known: sweep down from hi to
a split point m and keep g[m]; read [lo, m) recursively with one slot fewer, yield g[m], then read
(m, hi) again from the seed. With a budget of r computations, the deep part takes at most
N(slots-1, r) states and the re-swept part at most N(slots, r-1), which gives the recurrence for N
above. Taking the deep part as small as that allows, but at least N(slots-1, r-1), gives the
fewest steps in total (checked against exhaustive search in the tests).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from math import comb
from typing import TypeVar

State = TypeVar("State")
# step(t, g[t+1] or None for the last frame) -> g[t]
Step = Callable[[int, "State | None"], State]


def states_readable(slots: int, repetitions: int) -> int:
    """How many states `slots` memory slots can read in order when each is computed `repetitions` times."""
    return comb(slots + repetitions, slots) - 1


def repetitions_needed(length: int, slots: int) -> int:
    """The smallest r with states_readable(slots, r) >= length (1 when everything fits)."""
    repetitions = 1
    while states_readable(slots, repetitions) < length:
        repetitions += 1
    return repetitions


def read_forward(step: Step, length: int, slots: int) -> Iterator[tuple[int, State]]:
    """Yield (t, g[t]) for t = 0 .. length-1 of the backward recurrence g[t] = step(t, g[t+1]).

    The last state is g[length-1] = step(length-1, None). At most `slots` states (>= 1) are held
    at once besides the one `step` is computing; each step runs at most
    `repetitions_needed(length, slots)` times for the same t.
    """
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    yield from _read_range(step, 0, length, None, slots)


def _sweep(step: Step, start: int, stop: int, seed: State | None) -> State | None:
    """Run the recurrence from g[start] (seed = g[start+1]) down to g[stop]; return g[stop]."""
    state = seed
    for t in range(start, stop - 1, -1):
        state = step(t, state)
    return state


def _read_range(step: Step, lo: int, hi: int, seed: State | None, slots: int) -> Iterator[tuple[int, State]]:
    """Yield g[lo] .. g[hi-1] in order given seed = g[hi] (None when hi is the clip end)."""
    while lo < hi:
        length = hi - lo
        if length <= slots:
            stored = []
            state = seed
            for t in range(hi - 1, lo - 1, -1):
                state = step(t, state)
                stored.append(state)
            del state
            for t in range(lo, hi):
                yield t, stored.pop()
            return
        repetitions = repetitions_needed(length, slots)
        deep = max(states_readable(slots - 1, repetitions - 1),
                   length - 1 - states_readable(slots, repetitions - 1))
        split = lo + deep
        kept = _sweep(step, hi - 1, split, seed)
        yield from _read_range(step, lo, split, kept, slots - 1)
        yield split, kept
        del kept
        lo = split + 1
