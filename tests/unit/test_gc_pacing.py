"""The ledger's garbage collection pacing: old objects frozen, yet cycles reclaimed in time."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from services.ledger.gc_pacing import GcPacer
from tests.kit.clock import SettableClock


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def pacer(clock: SettableClock) -> Iterator[GcPacer]:
    gc.unfreeze()
    paced = GcPacer(interval_seconds=600, monotonic=clock.monotonic)
    gc.callbacks.append(paced)
    try:
        yield paced
    finally:
        gc.callbacks.remove(paced)
        gc.unfreeze()


def test_a_full_collection_freezes_its_survivors(pacer: GcPacer) -> None:
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert pacer.full_collections == 1
    assert gc.get_freeze_count() > 0


def test_younger_collections_freeze_nothing(pacer: GcPacer) -> None:
    gc.collect(0)
    gc.collect(1)
    assert pacer.full_collections == 0
    assert gc.get_freeze_count() == 0


def test_a_frozen_cycle_is_reclaimed_once_the_interval_has_passed(
    pacer: GcPacer, clock: SettableClock
) -> None:
    first, second = Node(), Node()
    first.other, second.other = second, first
    alive = weakref.ref(first)
    gc.collect()  # survives (still referenced) and is frozen
    del first, second
    gc.collect()
    assert alive() is not None, "frozen garbage is not walked before the interval"

    clock.advance(seconds=600)
    gc.collect()  # still frozen during this one; unfrozen right after it
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None
    assert gc.get_freeze_count() > 0, "and the survivors are frozen again"
