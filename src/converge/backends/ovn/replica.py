"""The NB replica and the fingerprints computed from it: which rows are whose, and what each object holds.

ovsdbapp's IDL keeps a full copy of the Northbound DB and calls :meth:`NbIdl.notify` for every row
change. From those notifications this module keeps, incrementally (a pure-Python hash of a row costs
~100 µs, so nothing is recomputed that did not change):

- ownership: which rows carry Converge's stamps and whose they are (``converge:kind``/``converge:id`` on
  an object's primary row, ``converge:owner`` on its other rows, ``converge:row`` on every row);
- membership: which container rows (a switch's ``ports``, a port group's ``ports`` and ``acls``, a router's
  ``ports``/``nat``/``static_routes``, a gateway port's ``gateway_chassis``) list which rows;
- per object, the digest the engine sees (see :func:`normal_row` and :meth:`Replica.refresh`), and per root
  the sum of its objects' digests, the fingerprint.

Everything here runs on the IDL's thread (notify, and ``run`` that refreshes after each batch of
updates); readers on other threads take :attr:`Replica.lock`. Who calls it: ``backend.py`` builds the IDL
and reads fingerprints; ``apply.py`` reads rows and normal forms while it writes.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ovs.db.idl import Idl
from ovsdbapp.backend.ovs_idl.connection import OvsdbIdl

from converge.backends.ovn.columns import CONTAINER_COLUMNS, MANAGED
from converge.backends.ovn.rows import PG_DROP, SHARED, ObjectKey, RowRef, RowSpec, Slot
from converge.core import canonical
from converge.core.ids import RootId

# Stamps of the primary row: what was written, not what is there, so they stay out of the normal form.
DIGEST, ROWS = "converge:digest", "converge:rows"
STAMPS = frozenset({DIGEST, ROWS})
KIND, OID, ROOT, OWNER, ROW = "converge:kind", "converge:id", "converge:root", "converge:owner", "converge:row"
# The per-root marker (fence) row: an Address_Set no ACL names, unique by name.
MARKER_TABLE = "Address_Set"
EPOCH, FINGERPRINT, TXN = "converge:epoch", "converge:fingerprint", "converge:txn"
EMPTY = "converge:empty:"  # marker key prefix: the digest of an object that has no row (kind/id after it)
SHARED_NAMES = {("Port_Group", PG_DROP)}

ROW_TABLES = frozenset(MANAGED)


def marker_name(root: str) -> str:
    """Address set names must be identifiers; root ids may hold ``:`` or ``-``."""
    return "converge_root_" + hashlib.sha256(root.encode()).hexdigest()[:40]


def label(key: ObjectKey) -> str:
    return f"{key[0]}/{key[1]}"


def parse_label(text: str) -> ObjectKey | None:
    kind, sep, oid = text.partition("/")
    return (kind, oid) if sep and kind and oid else None


def slot_id(owner: ObjectKey, row: str, column: str) -> str:
    """How a container slot appears in a normal form: ``network/<id>:ls#ports``, ``shared:<name>#ports``."""
    if owner == SHARED:
        return f"shared:{row}#{column}"
    return f"{label(owner)}:{row}#{column}"


def plain_value(value: Any, ref: Callable[[Any], str]) -> Any:
    """A column value in canonical JSON form: rows become the identity ``ref`` gives, sets sorted."""
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain_value(v, ref) for v in value]
        return sorted(items, key=lambda v: canonical.canonical_json(v))
    if isinstance(value, dict):
        return {str(plain_value(k, ref)): plain_value(v, ref) for k, v in value.items()}
    if isinstance(value, RowRef) or hasattr(value, "_table") or isinstance(value, uuid.UUID):
        return ref(value)
    return value


def rows_hash(forms: Iterable[Mapping[str, Any]]) -> str:
    """The hash of an object's normal rows (order-independent): what ``converge:rows`` stamps."""
    encoded = sorted(canonical.canonical_json(f) for f in forms)
    return hashlib.sha256(b"\n".join(encoded)).hexdigest()


def drift_digest(actual_hash: str) -> int:
    """The digest of an object whose rows are not what was written: never a document's digest."""
    return canonical.digest_bytes(b"converge-drift:" + actual_hash.encode())


@dataclass
class Held:
    """What the replica says of one object."""

    root: RootId
    digest: int


class Replica:
    """Ownership, membership and sums, kept from the IDL's notifications (IDL thread only, or under lock)."""

    def __init__(self, tables: Mapping[str, Any]) -> None:
        self.tables = tables  # idl.tables
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.owner_of: dict[uuid.UUID, tuple[ObjectKey, str]] = {}
        self.table_of: dict[uuid.UUID, str] = {}
        self.rows_of: dict[ObjectKey, dict[str, uuid.UUID]] = defaultdict(dict)
        self.primary_of: dict[ObjectKey, uuid.UUID] = {}
        self.shared: dict[str, uuid.UUID] = {}  # name -> uuid of shared rows (neutron_pg_drop)
        self.markers: dict[RootId, uuid.UUID] = {}
        self.marker_empties: dict[RootId, dict[ObjectKey, int]] = {}
        self.empty_of: dict[ObjectKey, tuple[RootId, int]] = {}  # objects with no row: their marker entry
        self.children: dict[tuple[uuid.UUID, str], frozenset[uuid.UUID]] = {}
        self.containers: dict[uuid.UUID, set[tuple[uuid.UUID, str]]] = defaultdict(set)
        self.held: dict[ObjectKey, Held] = {}
        self.by_root: dict[RootId, dict[ObjectKey, int]] = defaultdict(dict)
        self.sums: dict[RootId, int] = defaultdict(int)
        self.dirty: set[ObjectKey] = set()
        self.inflight: set[RootId] = set()
        self.moved: set[RootId] = set()  # roots whose sum changed with no write of ours in flight
        self.ports_up: list[str] = []  # port ids whose LSP turned up since last taken
        self.generation = 0  # bumped on every refresh (waiters compare it)
        self.shared_touched = False  # the shared drop group or one of its ACLs changed: check them

    # -- notifications (IDL thread) ------------------------------------------------------------------
    def forget_rows(self) -> None:
        """The IDL dropped every row without a notification (a whole new dump follows: NB wiped or
        replaced, or a server that did not know our last transaction). Forget what was derived from them;
        every object known is recomputed after the dump, so one that did not come back leaves its root's
        sum (drift seen) instead of being counted for ever."""
        with self.lock:
            self.dirty.update(self.held)
            self.dirty.update(self.empty_of)
            for mapping in (self.owner_of, self.table_of, self.rows_of, self.primary_of, self.shared,
                            self.markers, self.marker_empties, self.empty_of, self.children, self.containers):
                mapping.clear()
            self.shared_touched = True

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        table = row._table.name
        with self.lock:
            deleted = event == "delete"
            if table in ROW_TABLES:
                self._own(row, deleted)
            if table in CONTAINER_COLUMNS:
                for column in CONTAINER_COLUMNS[table]:
                    self._members(row.uuid, column, () if deleted else _uuids(getattr(row, column, [])))
            if table == MARKER_TABLE:
                self._marker(row, deleted)
            if table == "Port_Group" and (table, getattr(row, "name", None)) in SHARED_NAMES:
                if deleted:
                    self.shared.pop(row.name, None)
                else:
                    self.shared[row.name] = row.uuid
                    if event != "update" or _changed(updates, "acls"):  # not on every member added
                        self.shared_touched = True
            if table == "ACL" and any(row.uuid in self.children.get((u, "acls"), ()) for u in self.shared.values()):
                self.shared_touched = True  # a drop ACL edited (a deleted one also changes its group's acls)
            if table == "Logical_Switch_Port" and not deleted:
                self._port_up(row, event, updates)

    def _own(self, row: Any, deleted: bool) -> None:
        before = self.owner_of.pop(row.uuid, None)
        self.table_of.pop(row.uuid, None)
        if before is not None:
            old, old_row = before
            if self.rows_of.get(old, {}).get(old_row) == row.uuid:
                del self.rows_of[old][old_row]
            if self.primary_of.get(old) == row.uuid:
                del self.primary_of[old]
            self.dirty.add(old)
        if deleted:
            return
        ext = row.external_ids
        key: ObjectKey | None
        key = (ext[KIND], ext[OID]) if KIND in ext and OID in ext else parse_label(ext.get(OWNER, ""))
        if key is None:
            return  # not ours: never touched
        rkey = ext.get(ROW, "")
        self.owner_of[row.uuid] = (key, rkey)
        self.table_of[row.uuid] = row._table.name
        self.rows_of[key][rkey] = row.uuid
        if KIND in ext:
            self.primary_of[key] = row.uuid
        self.dirty.add(key)

    def _members(self, container: uuid.UUID, column: str, now: Iterable[uuid.UUID]) -> None:
        new = frozenset(now)
        old = self.children.get((container, column), frozenset())
        if new == old:
            return
        if new:
            self.children[(container, column)] = new
        else:
            self.children.pop((container, column), None)
        for child in old - new:
            self.containers[child].discard((container, column))
            if not self.containers[child]:
                del self.containers[child]
            self._touch(child)
        for child in new - old:
            self.containers[child].add((container, column))
            self._touch(child)

    def _touch(self, row_uuid: uuid.UUID) -> None:
        owner = self.owner_of.get(row_uuid)
        if owner is not None:
            self.dirty.add(owner[0])

    def _marker(self, row: Any, deleted: bool) -> None:
        root = row.external_ids.get(ROOT)
        if root is None:
            return
        root = RootId(root)
        before = self.marker_empties.pop(root, {})
        for key in before:
            self.empty_of.pop(key, None)
        self.dirty.update(before)
        if deleted:
            if self.markers.get(root) == row.uuid:
                del self.markers[root]
            return
        self.markers[root] = row.uuid
        empties: dict[ObjectKey, int] = {}
        for k, v in row.external_ids.items():
            found = parse_label(k[len(EMPTY):]) if k.startswith(EMPTY) else None
            if found is not None:
                empties[found] = int(v, 16)
        self.marker_empties[root] = empties
        for key, digest in empties.items():
            self.empty_of[key] = (root, digest)
        self.dirty.update(empties)

    def _port_up(self, row: Any, event: str, updates: Any) -> None:
        if row.up != [True] or row.external_ids.get(KIND) != "port":
            return
        if event == "update":
            try:
                if updates.up == [True]:
                    return
            except AttributeError:  # 'up' did not change in this update
                return
        self.ports_up.append(row.name)

    # -- digests (IDL thread, after a batch of notifications) ------------------------------------------
    def refresh(self) -> None:
        """Recompute the digests of the objects whose rows changed, and the sums of their roots."""
        with self.lock:
            if not self.dirty:
                return
            dirty, self.dirty = self.dirty, set()
            for key in dirty:
                self._settle(key, self._compute(key))
            self.generation += 1
            self.changed.notify_all()

    def _compute(self, key: ObjectKey) -> Held | None:
        primary = self.primary_of.get(key)
        if primary is None:
            empty = self.empty_of.get(key)
            return Held(*empty) if empty is not None else None
        row = self.row(primary)
        if row is None:
            return None
        ext = row.external_ids
        actual = rows_hash(self.normal_forms(key))
        try:
            stamped = int(ext[DIGEST], 16)
        except (KeyError, ValueError):
            return Held(RootId(ext.get(ROOT, "")), drift_digest(actual))
        if ext.get(ROWS) != actual:
            return Held(RootId(ext.get(ROOT, "")), drift_digest(actual))
        return Held(RootId(ext.get(ROOT, "")), stamped)

    def _settle(self, key: ObjectKey, now: Held | None) -> None:
        before = self.held.get(key)
        if before == now:
            return
        if before is not None:
            self.by_root[before.root].pop(key, None)
            self.sums[before.root] = canonical.remove(self.sums[before.root], before.digest)
            self._moved(before.root)
            if not self.by_root[before.root]:
                del self.by_root[before.root]
                del self.sums[before.root]
        if now is None:
            self.held.pop(key, None)
            return
        self.held[key] = now
        self.by_root[now.root][key] = now.digest
        self.sums[now.root] = canonical.add(self.sums[now.root], now.digest)
        self._moved(now.root)

    def _moved(self, root: RootId) -> None:
        if root not in self.inflight:
            self.moved.add(root)

    # -- lookups -----------------------------------------------------------------------------------
    def row(self, row_uuid: uuid.UUID) -> Any | None:
        """One of our rows by uuid (None if it is gone or not ours)."""
        table = self.table_of.get(row_uuid)
        return self.tables[table].rows.get(row_uuid) if table is not None else None

    def rows(self, key: ObjectKey) -> dict[str, Any]:
        """The object's rows in the replica, by row key."""
        out = {}
        for rkey, row_uuid in self.rows_of.get(key, {}).items():
            found = self.row(row_uuid)
            if found is not None:
                out[rkey] = found
        return out

    def container(self, slot: Slot) -> Any | None:
        if slot.owner == SHARED:
            found = self.shared.get(slot.row)
            return self.tables["Port_Group"].rows.get(found) if found is not None else None
        row_uuid = self.rows_of.get(slot.owner, {}).get(slot.row)
        return self.row(row_uuid) if row_uuid is not None else None

    def identity(self, value: Any) -> str:
        """How a reference to a row appears in normal forms: its owner and row key, or its uuid if foreign."""
        row_uuid = value if isinstance(value, uuid.UUID) else value.uuid
        owner = self.owner_of.get(row_uuid)
        if owner is not None:
            return f"{label(owner[0])}:{owner[1]}"
        for name, shared in self.shared.items():
            if shared == row_uuid:
                return f"shared:{name}"
        return f"uuid:{row_uuid}"

    def slot_of(self, container: uuid.UUID, column: str) -> str | None:
        """The slot identity of a container column, if the container is ours or shared (else None)."""
        owner = self.owner_of.get(container)
        if owner is not None:
            return slot_id(owner[0], owner[1], column)
        for name, shared in self.shared.items():
            if shared == container:
                return slot_id(SHARED, name, column)
        return None

    def normal_forms(self, key: ObjectKey) -> list[dict[str, Any]]:
        """The normal form of each of the object's rows as the replica holds them."""
        forms = []
        for rkey, row in self.rows(key).items():
            table = row._table.name
            columns = {c: plain_value(getattr(row, c), self.identity) for c in MANAGED[table]}
            columns["external_ids"] = {k: v for k, v in row.external_ids.items() if k not in STAMPS}
            slots = sorted(s for c, col in self.containers.get(row.uuid, ()) if (s := self.slot_of(c, col)))
            forms.append({"table": table, "key": rkey, "columns": columns, "in": slots})
        return forms

    def spec_form(self, spec: RowSpec, external_ids: Mapping[str, str],
                  resolve: Callable[[RowRef], str | None]) -> dict[str, Any]:
        """The normal form the row ``spec`` will have once written (references resolved by ``resolve``)."""

        def ref(value: Any) -> str:
            if isinstance(value, RowRef):
                found = resolve(value)
                return found if found is not None else ""
            return self.identity(value)

        columns = {c: plain_value(spec.columns.get(c), ref) for c in MANAGED[spec.table]}
        for c, v in columns.items():  # an unresolved optional reference is an empty set
            if isinstance(v, list):
                columns[c] = [x for x in v if x != ""]
        columns["external_ids"] = {k: v for k, v in external_ids.items() if k not in STAMPS}
        slots = [spec.parent, *spec.also_in] if spec.parent else list(spec.also_in)
        return {"table": spec.table, "key": spec.key, "columns": columns,
                "in": sorted(slot_id(s.owner, s.row, s.column) for s in slots)}

    # -- fingerprints (any thread, under lock) --------------------------------------------------------
    def fingerprint(self, root: RootId) -> int:
        with self.lock:
            return self.sums.get(root, 0)

    def summaries(self) -> list[tuple[RootId, int, int]]:
        with self.lock:
            return sorted((root, self.sums[root], len(objs)) for root, objs in self.by_root.items())

    def digests(self, root: RootId) -> dict[ObjectKey, int]:
        with self.lock:
            return dict(self.by_root.get(root, {}))

    def take_moved(self) -> set[RootId]:
        with self.lock:
            moved, self.moved = self.moved, set()
            return moved

    def take_ports_up(self) -> list[str]:
        with self.lock:
            up, self.ports_up = self.ports_up, []
            return up


def _changed(updates: Any, column: str) -> bool:
    """Whether an update notification's old values include ``column`` (it changed)."""
    try:
        getattr(updates, column)
    except AttributeError:
        return False
    return True


def _uuids(value: Any) -> list[uuid.UUID]:
    return [v if isinstance(v, uuid.UUID) else v.uuid for v in value]


class NbIdl(OvsdbIdl):  # type: ignore[misc]
    """The IDL, feeding :class:`Replica` and refreshing it after every batch of updates."""

    def __init__(self, remote: str, helper: Any) -> None:
        super().__init__(remote, helper, leader_only=False)
        self.replica = Replica(self.tables)
        self.after_run: Callable[[], None] | None = None

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        self.replica.notify(event, row, updates)

    def _Idl__clear(self) -> None:  # noqa: N802 - overrides python-ovs's private Idl.__clear
        """python-ovs empties its tables without a notification before a whole new dump: the replica
        forgets its rows too (seen: a wiped NB left every object counted, so nothing was repaired)."""
        Idl._Idl__clear(self)
        self.replica.forget_rows()

    def cooperative_yield(self) -> None:
        """ovsdbapp sleeps 0 s per row parsed, for eventlet; plain threads gain nothing from it but
        context switches (7 % of a drain's samples)."""

    def run(self) -> Any:
        result = super().run()
        self.replica.refresh()
        if self.after_run is not None:
            self.after_run()
        return result
