"""Reconnect delays (docs/design.md section 4): capped exponential backoff with jitter for retryable
failures, a slow fixed pace for configuration faults (authentication), never a spin."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt: ``min(max, initial·2^n)`` scaled by a jitter in
        [0.5, 1] (replicas that lost KWIKmotion together do not come back in step)."""
        base = min(self.maximum, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return base * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0


def slow(seconds: float, rng: random.Random | None = None) -> float:
    """The pace of retries after an authentication error: ``seconds`` ± 10%."""
    return seconds * (rng or random).uniform(0.9, 1.1)
