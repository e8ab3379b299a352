"""Time-ordered record ids (UUID version 7, RFC 9562 §5.7).

A personal record's id is its primary key and the second column of the purge's keyset index
`(due_at, id)`. Random ids (version 4) scatter records that are stored side by side: rows
written in one import or one sync sit together in the table, but a purge batch, which walks
them in id order, then touches a different page for nearly every row, in the table and in each
of its indexes, and SQLite's `secure_delete` rewrites every page it touches. Ids that grow with
time keep a batch on the pages its rows were written to.

The 48-bit Unix time in milliseconds comes first, then a 12-bit counter that keeps ids made in
the same millisecond by this process increasing (RFC 9562 §6.2, method 1), then 62 random bits.
The creation time an id shows is the record's `created_at`, which the record carries anyway.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    """A new version 7 UUID, increasing within this process."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    return uuid.UUID(int=value)


def ranked(rank: int) -> uuid.UUID:
    """A time-ordered id whose first byte is `rank` (0 to 255): ids of a lower rank sort first
    whatever their time, ids of one rank by time. The first byte of a version 7 UUID changes
    once in about 35 years, so nothing orderly is lost by replacing it."""
    if not 0 <= rank <= 0xFF:
        raise ValueError("rank is one byte")
    return uuid.UUID(bytes=bytes([rank]) + uuid7().bytes[1:])
