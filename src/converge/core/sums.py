"""Truncated sums: the short form in which the two sides compare group and bucket sums to localise drift.

Why: repairing a small root used to cost more in sums than in the objects it re-sent (BENCHMARKS.md,
"Repair bytes"): 16 group sums of 64 hex digits each to find one differing group. Localising only needs
to tell sums apart, so the repair compares their first ``width`` bytes (``2 * width`` hex digits). A
truncated pair that happens to be equal while the sums differ (a collision, odds 2^-(8 * width) per
differing group or bucket) hides a difference; the whole 256-bit root fingerprint, compared at the end
(``engine.repair``), catches it, and the repair looks again at full width (``FULL``). So a collision costs
one more round, never a wrong repair.

One definition for every side: the fabric controller's ``/diff`` endpoint (``fabric.api``), the fabric
client, and the backends that compute sums from a replica (``backends.base.compare_held``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

FULL = 32  # bytes in a whole sum (256 bits)
GROUPS = 16  # groups per root, and buckets per group


def truncate(value: int, width: int) -> int:
    """The first ``width`` bytes of a 256-bit sum: its leading ``2 * width`` hex digits, as a number."""
    return value >> (8 * (FULL - width))


def pack(values: Sequence[int], width: int) -> str:
    """``values`` (whole sums) truncated to ``width`` bytes each, as one string of hex digits, in order."""
    return "".join(f"{truncate(v, width):0{2 * width}x}" for v in values)


def unpack(text: str, width: int, count: int = GROUPS) -> list[int]:
    """The inverse of :func:`pack` for ``count`` truncated sums; ValueError if ``text`` is not that."""
    step = 2 * width
    if not 1 <= width <= FULL or len(text) != step * count:
        raise ValueError(f"expected {count} sums of {step} hex digits ({step * count} digits in all)")
    return [int(text[i:i + step], 16) for i in range(0, len(text), step)]


def group_row(sums: Mapping[str, int]) -> list[int]:
    """Group sums keyed by hex digit (absent: empty, 0) as the 16 values of groups ``0`` to ``f``."""
    return [sums.get(f"{g:x}", 0) for g in range(GROUPS)]


def bucket_row(bucket_sums: Mapping[int, int], group: int) -> list[int]:
    """The 16 bucket sums of ``group`` (buckets ``group * 16`` to ``group * 16 + 15``; absent: 0)."""
    return [bucket_sums.get(group * GROUPS + i, 0) for i in range(GROUPS)]
