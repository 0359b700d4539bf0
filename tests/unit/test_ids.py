from __future__ import annotations

import time

from domain.ids import new_id, ulid, ulid_millis


def test_ids_sort_by_creation_time() -> None:
    earlier = ulid(now_ms=1_700_000_000_000)
    later = ulid(now_ms=1_700_000_000_001)
    assert earlier < later
    assert len(earlier) == 26


def test_ids_carry_their_prefix_and_time() -> None:
    before = int(time.time() * 1000)
    identifier = new_id("evt")
    assert identifier.startswith("evt_")
    assert before <= ulid_millis(identifier) <= int(time.time() * 1000)


def test_ids_made_in_the_same_millisecond_differ() -> None:
    assert len({ulid(now_ms=1) for _ in range(1000)}) == 1000
