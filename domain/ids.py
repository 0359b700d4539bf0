"""Time-ordered identifiers: a prefix plus a ULID (48-bit milliseconds, 80 random bits).

Sorting ids sorts by creation time, which keeps the event log in order and indexes
append-only.
"""

from __future__ import annotations

import os
import random
import time

# Ids need uniqueness, not secrecy: a generator seeded from the OS once (and again in a
# forked child) avoids a system call for every id on the intake path.
_random = random.Random(os.urandom(32))  # noqa: S311
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, index = divmod(value, 32)
        chars.append(_ALPHABET[index])
    return "".join(reversed(chars))


def ulid(now_ms: int | None = None) -> str:
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    randomness = _random.getrandbits(80)
    return _encode(millis, 10) + _encode(randomness, 16)


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"


def ulid_millis(identifier: str) -> int:
    """The creation time (ms since the epoch) encoded in an id made by ``new_id``."""
    body = identifier.rsplit("_", 1)[-1][:10]
    value = 0
    for char in body:
        value = value * 32 + _ALPHABET.index(char)
    return value
