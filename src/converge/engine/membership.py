"""Who should own a root: rendezvous (highest-random-weight) hashing over the live workers.

Every worker computes the same owner from the same live set, without coordination; when a worker joins
or leaves, only the roots it wins or loses move. Leases, not this function, guarantee exclusivity: two
workers with different views of the live set may both want a root, and the guarded UPDATE picks one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def owner(root: str, live: Sequence[str]) -> str | None:
    if not live:
        return None
    return max(live, key=lambda w: hashlib.sha256(f"{w}\x00{root}".encode()).digest())
