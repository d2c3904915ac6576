"""The repair's localisation logic (engine/repair.py) on the in-memory controller: cut sums find the keys that
differ, in one call for a small root; a collision of cut sums, forced here by a believed digest that differs
from the controller's only below the compared bytes, costs a second pass at full width and never a wrong
answer."""

from __future__ import annotations

import pytest

from converge.core import canonical, sums
from converge.core.canonical import ObjectDoc
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind
from converge.engine.repair import SHORT, explains, find_differences, localise
from converge.testing.memory import MemoryBackend

ROOT = RootId("p1")


def held(n: int) -> MemoryBackend:
    """A controller holding ``n`` networks in ROOT."""
    backend = MemoryBackend()
    for i in range(n):
        backend.drift(ROOT, "network", f"net-{i}", ObjectDoc(Kind.NETWORK, ObjectId(f"net-{i}"), {"name": f"n{i}"}, 1))
    return backend


def digests(backend: MemoryBackend) -> dict[tuple[str, str], int]:
    return {key: doc.digest() for key, doc in backend.docs(ROOT).items()}


def test_truncate_keeps_the_leading_bytes_and_pack_round_trips():
    value = int("ab12" + "0" * 60, 16) + 7
    assert sums.truncate(value, 2) == 0xAB12
    assert sums.truncate(value, sums.FULL) == value
    row = [value, 0, 1 << 255] + [0] * 13
    assert sums.pack(row, 1)[:6] == "ab0080"
    assert sums.unpack(sums.pack(row, sums.FULL), sums.FULL) == row
    with pytest.raises(ValueError):
        sums.unpack("ab", 2)


def test_a_small_root_is_localised_in_one_call_with_the_controllers_digests():
    backend = held(40)
    believed = digests(backend)
    gone, changed, stray = ("network", "net-3"), ("network", "net-7"), ("network", "stray")
    backend.drift(ROOT, *gone, None)
    backend.drift(ROOT, *changed, ObjectDoc(Kind.NETWORK, ObjectId("net-7"), {"name": "tampered"}, 1))
    backend.drift(ROOT, *stray, ObjectDoc(Kind.NETWORK, ObjectId("stray"), {}, 1))
    before = len(backend.calls)
    etag, differing = find_differences(backend, ROOT, believed)
    now = digests(backend)
    assert differing == {gone: None, changed: now[changed], stray: now[stray]}
    assert etag == canonical.combine(now.values()) and explains(believed, differing, etag)
    assert backend.calls[before:] == ["compare_groups"]  # 40 objects: the differing groups were listed


def test_a_large_root_is_narrowed_by_bucket_sums_and_listed_in_one_more_call():
    backend = held(600)  # ~37 objects a group: differing groups answer their bucket sums
    believed = digests(backend)
    for i in (5, 77, 300):
        backend.drift(ROOT, "network", f"net-{i}", None)
    before = len(backend.calls)
    _, differing = find_differences(backend, ROOT, believed)
    assert differing == {("network", f"net-{i}"): None for i in (5, 77, 300)}
    assert backend.calls[before:] == ["compare_groups", "entries"]


@pytest.mark.parametrize("objects", [40, 600], ids=["listed group", "narrowed group"])
def test_a_collision_of_cut_sums_costs_a_full_width_pass_never_a_wrong_answer(objects):
    backend = held(objects)
    believed = digests(backend)
    victim = ("network", "net-11")
    # The store believes a digest one above the controller's: every sum it is part of differs from the
    # controller's in the last bits only, so their first SHORT bytes are equal (a collision; the +1 would
    # have to carry through 240 one bits to show there).
    truth = believed[victim]
    believed[victim] = truth + 1
    _, hidden = localise(backend, ROOT, believed, width=SHORT)
    assert hidden == {}  # the short pass saw no difference...
    before = len(backend.calls)
    etag, differing = find_differences(backend, ROOT, believed)
    assert differing == {victim: truth}  # ...the ETag check caught it, the full-width pass found it
    assert explains(believed, differing, etag)
    assert backend.calls[before:].count("compare_groups") == 2

