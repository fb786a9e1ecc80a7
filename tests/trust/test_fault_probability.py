"""Fault probability: an asymmetric probability with seeded randomness, so an inverted draw cannot pass."""

from __future__ import annotations

import random

import pytest

from cmg_protocol.clock import FakeClock
from mock_site.faults.registry import FaultRegistry


class Draws(random.Random):
    """A Random whose draws are a fixed list (then the list again)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = values
        self.i = 0

    def random(self) -> float:
        value = self.values[self.i % len(self.values)]
        self.i += 1
        return value


@pytest.mark.parametrize("probability", [0.2, 0.85])
def test_an_asymmetric_probability_injects_that_share_of_requests(probability: float) -> None:
    """With a seeded rng, about ``probability`` of 5000 requests draw the fault (±2.5 points), counted as injections."""
    registry = FaultRegistry(FakeClock(), random.Random(18))
    registry.set("reset", probability=probability)
    drawn = sum(registry.trigger("reset", "cmg") is not None for _ in range(5000))
    assert abs(drawn / 5000 - probability) <= 0.025
    assert registry.injections()["reset"] == drawn
    assert registry.snapshot()[0]["injections"] == drawn


def test_a_draw_below_the_probability_injects_and_one_at_it_does_not() -> None:
    """The draw is ``random() < probability``: 0.1 and 0.19 inject at 0.2, 0.2 and 0.9 do not."""
    registry = FaultRegistry(FakeClock(), Draws([0.1, 0.2, 0.19, 0.9]))
    registry.set("reset", probability=0.2)
    assert [registry.trigger("reset", "cmg") is not None for _ in range(4)] == [True, False, True, False]


def test_certain_and_impossible_faults_draw_nothing() -> None:
    """Probability 1 always injects and 0 never does, without consuming the rng (other draws stay reproducible)."""
    for probability, expected in ((1.0, True), (0.0, False)):
        rng = Draws([0.5])
        registry = FaultRegistry(FakeClock(), rng)
        registry.set("reset", probability=probability)
        assert [registry.trigger("reset", "cmg") is not None for _ in range(10)] == [expected] * 10
        assert rng.i == 0
