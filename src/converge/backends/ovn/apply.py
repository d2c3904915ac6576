"""One batch of the engine as one OVSDB transaction: fence, referential integrity, write what differs.

:class:`ApplyBatch` is an ovsdbapp command: ``run_idl`` runs on the IDL's thread against the replica, and
ovsdbapp runs it again on a refreshed replica when the server answers "try again" — which is what a
concurrent writer of the root's marker row causes. So every check below sees the state the commit
applies to:

1. the marker: the writer's lease epoch must not be lower than the last writer's, and the root's
   fingerprint (from the replica) must be the ``If-Match`` the engine sent, else PreconditionFailed;
   the marker's ``external_ids`` are verified, then rewritten (epoch, new fingerprint, transaction id);
2. each operation in order (parents first, as the engine plans): a put translates the document
   (``translate.object_rows``), refuses it when a parent is absent (409 ``missing_parent``), and writes
   only the columns and memberships that differ; a delete refuses when rows of other objects (or of
   other writers) still hang below the object's rows (409 ``has_children``), since OVSDB would delete
   them silently;
3. derived rows: a router's SNAT rows follow its gateway and its interfaces (``translate.snat_rows``);
4. stamps: each written object's primary row gets ``converge:digest`` and ``converge:rows``.

Rows without Converge's stamps are never written; shared containers (``neutron_pg_drop``, another root's
switch or port group) are only mutated (one member inserted or removed). Who calls it: ``backend.py``.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ovsdbapp.backend.ovs_idl.command import BaseCommand

from converge.backends.base import Delete, Operation, Put
from converge.backends.ovn import translate
from converge.backends.ovn.replica import (
    DIGEST,
    EMPTY,
    EPOCH,
    FINGERPRINT,
    KIND,
    MARKER_TABLE,
    OID,
    OWNER,
    ROOT,
    ROW,
    ROWS,
    TXN,
    Replica,
    label,
    marker_name,
    plain_value,
    rows_hash,
)
from converge.backends.ovn.rows import PG_DROP, SHARED, ObjectKey, ObjectRows, RowRef, RowSpec, Slot
from converge.core import canonical
from converge.core.errors import Fenced, ObjectRejected, PreconditionFailed
from converge.core.ids import RootId
from converge.core.kinds import InvalidReference, parents

ROOT_TABLES = frozenset({"Logical_Switch", "Logical_Router", "Port_Group", "DHCP_Options", "Address_Set"})


@dataclass
class _Batch:
    """What the batch has done so far, so later operations see earlier ones."""

    txn: Any
    written: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)  # rows after the batch
    gone: set[ObjectKey] = field(default_factory=set)
    specs: dict[ObjectKey, list[tuple[RowSpec, dict[str, str]]]] = field(default_factory=dict)
    primaries: dict[ObjectKey, tuple[Any, dict[str, str], int]] = field(default_factory=dict)
    empties: dict[ObjectKey, int | None] = field(default_factory=dict)  # rowless objects: digest / removed
    routers: set[ObjectKey] = field(default_factory=set)  # routers whose SNAT rows must follow
    shared_made: dict[str, Any] = field(default_factory=dict)


class ApplyBatch(BaseCommand):  # type: ignore[misc]
    def __init__(self, api: Any, *, replica: Replica, root: RootId, if_match: int, epoch: int,
                 operations: Sequence[Operation], settings: translate.Settings) -> None:
        super().__init__(api)
        self.replica = replica
        self.root = root
        self.if_match = if_match
        self.epoch = epoch
        self.operations = list(operations)
        self.settings = settings
        self.txn_id = uuid.uuid4().hex
        self.expected = if_match

    # -- the command -----------------------------------------------------------------------------------
    def run_idl(self, txn: Any) -> None:
        r = self.replica
        r.refresh()  # notifications of the last run are in; make every digest current
        with r.lock:
            r.inflight.add(self.root)
            marker = self._fence(txn)
            b = _Batch(txn)
            expected = self.if_match
            for index, op in enumerate(self.operations):
                key = op.key
                before = r.held.get(key)
                if before is not None and before.root == self.root:
                    expected = canonical.remove(expected, before.digest)
                if isinstance(op, Put):
                    self._put(b, index, op)
                    expected = canonical.add(expected, op.doc.digest())
                else:
                    self._delete(b, index, op)
            for router in sorted(b.routers - b.gone):
                self._derive_snat(b, router)
            self._stamp(b)
            self.expected = expected
            self._write_marker(b, marker, expected)

    def _fence(self, txn: Any) -> Any:
        r = self.replica
        marker_uuid = r.markers.get(self.root)
        marker = self.api.idl.tables[MARKER_TABLE].rows.get(marker_uuid) if marker_uuid else None
        current = r.sums.get(self.root, 0)
        if marker is not None:
            last = int(marker.external_ids.get(EPOCH, "0") or 0)
            if self.epoch < last:
                raise Fenced(f"root {self.root}: lease epoch {self.epoch} is older than {last}, the last "
                             f"writer's", current=current, epoch=last)
            marker.verify("external_ids")
        if current != self.if_match:
            raise PreconditionFailed(f"root {self.root}: fingerprint moved on OVN", current=current)
        if marker is None:
            marker = txn.insert(self.api.idl.tables[MARKER_TABLE])
            marker.name = marker_name(self.root)
            marker.addresses = []
        return marker

    def _write_marker(self, b: _Batch, marker: Any, expected: int) -> None:
        try:
            ext = dict(marker.external_ids)
        except AttributeError:  # inserted in this transaction
            ext = {}
        for key, digest in b.empties.items():
            if digest is None:
                ext.pop(EMPTY + label(key), None)
            else:
                ext[EMPTY + label(key)] = canonical.hex256(digest)
        ext.update({ROOT: self.root, EPOCH: str(self.epoch), FINGERPRINT: canonical.hex256(expected),
                    TXN: self.txn_id})
        marker.external_ids = ext

    # -- puts -------------------------------------------------------------------------------------------
    def _put(self, b: _Batch, index: int, op: Put) -> None:
        doc = op.doc
        key = op.key
        try:
            spec = translate.object_rows(doc, self.settings)
            declared = [(k.value, i) for k, i in parents(doc.kind, doc.attributes)]
        except (translate.Unsupported, InvalidReference) as err:
            raise ObjectRejected(f"unsupported: {err}", index=index, status=422) from None
        for parent in declared:
            if not self._exists(b, parent):
                raise ObjectRejected(f"missing_parent: {label(parent)} is not on OVN", index=index,
                                     status=409, parent=parent)
        b.gone.discard(key)
        if not spec.rows:
            self._remove_rows(b, key)
            b.empties[key] = doc.digest()
            b.written[key] = {}
            return
        if key in self.replica.empty_of:
            b.empties[key] = None
        self._write_rows(b, index, key, spec, doc.digest())
        if doc.kind.value == "router":
            b.routers.add(key)
        elif doc.kind.value == "router_interface":
            b.routers.add(("router", str(doc.attributes.get("router_id"))))

    def _exists(self, b: _Batch, key: ObjectKey) -> bool:
        if key in b.written:
            return True
        return key not in b.gone and key in self.replica.held

    def _write_rows(self, b: _Batch, index: int, key: ObjectKey, spec: ObjectRows, digest: int) -> None:
        existing = dict(self.replica.rows(key)) if key not in b.gone else {}
        existing.update(b.written.get(key, {}))
        after: dict[str, Any] = {}
        b.written[key] = after  # rows of this object are findable by its own later rows (gateway chassis)
        forms: list[tuple[RowSpec, dict[str, str]]] = []
        for i, row_spec in enumerate(spec.rows):
            ext = {str(k): str(v) for k, v in (row_spec.columns.get("external_ids") or {}).items()}
            ext[ROW] = row_spec.key
            if i == 0:
                ext.update({KIND: key[0], OID: key[1], ROOT: self.root})
            else:
                ext[OWNER] = label(key)
            row = existing.pop(row_spec.key, None)
            if row is not None and row._table.name != row_spec.table:
                self._drop_row(b, row)
                row = None
            row = self._write_row(b, index, row, row_spec)
            after[row_spec.key] = row
            forms.append((row_spec, ext))
            if i == 0:
                b.primaries[key] = (row, ext, digest)
            else:
                _set_if_changed(row, "external_ids", ext)
        for rkey, row in existing.items():
            if rkey.startswith("snat:"):  # derived rows: _derive_snat keeps or drops them
                after[rkey] = row
            else:
                self._drop_row(b, row)
        b.specs[key] = forms

    def _write_row(self, b: _Batch, index: int, row: Any, spec: RowSpec) -> Any:
        new = row is None
        if new:
            row = b.txn.insert(self.api.idl.tables[spec.table])
        for column in translate.MANAGED[spec.table]:
            if column == "external_ids":
                continue
            value = self._value(b, spec.columns.get(column))
            if new:
                setattr(row, column, value)
            else:
                _set_if_changed(row, column, value)
        wanted = [spec.parent, *spec.also_in] if spec.parent else list(spec.also_in)
        have = set() if new else {(c, col) for c, col in self.replica.containers.get(row.uuid, ())
                                  if self.replica.slot_of(c, col) is not None}
        keep = set()
        for slot in wanted:
            container = self._container(b, index, slot)
            target = (container.uuid, slot.column)
            keep.add(target)
            if target not in have:
                container.addvalue(slot.column, row)
        for container_uuid, column in have - keep:
            container = self.replica.row(container_uuid) or self._shared_row(container_uuid)
            if container is not None:
                container.delvalue(column, row)
        return row

    def _value(self, b: _Batch, value: Any) -> Any:
        """A spec value as the IDL writes it: references become rows (or nothing if absent)."""
        if isinstance(value, RowRef):
            return self._resolve(b, value)
        if isinstance(value, list):
            out = [self._value(b, v) for v in value]
            return [v for v in out if v is not None]
        return value

    def _resolve(self, b: _Batch, ref: RowRef) -> Any | None:
        if ref.owner in b.written:
            return b.written[ref.owner].get(ref.row)
        if ref.owner in b.gone:
            return None
        return self.replica.rows(ref.owner).get(ref.row)

    def _container(self, b: _Batch, index: int, slot: Slot) -> Any:
        if slot.owner == SHARED:
            return self._shared(b, slot.row)
        if slot.owner in b.written:
            found = b.written[slot.owner].get(slot.row)
        elif slot.owner in b.gone:
            found = None
        else:
            found = self.replica.container(slot)
        if found is None:
            raise ObjectRejected(f"missing_parent: {label(slot.owner)} has no {slot.row} row on OVN",
                                 index=index, status=409, parent=slot.owner)
        return found

    def _shared(self, b: _Batch, name: str) -> Any:
        if name in b.shared_made:
            return b.shared_made[name]
        found = self.replica.container(Slot(SHARED, name, ""))
        if found is not None:
            return found
        made = {}
        for spec in translate.shared_rows():
            row = b.txn.insert(self.api.idl.tables[spec.table])
            for column in translate.MANAGED[spec.table]:
                setattr(row, column, self._value(b, spec.columns.get(column)))
            made[spec.key] = (row, spec)
        for row, spec in made.values():
            if spec.parent is not None:
                made[spec.parent.row][0].addvalue(spec.parent.column, row)
        b.shared_made[name] = made[name][0]
        return made[name][0]

    def _shared_row(self, row_uuid: uuid.UUID) -> Any | None:
        return self.api.idl.tables["Port_Group"].rows.get(row_uuid)

    # -- deletes ----------------------------------------------------------------------------------------
    def _delete(self, b: _Batch, index: int, op: Delete) -> None:
        key = op.key
        children: list[tuple[str, str, str]] = []
        foreign = 0
        for row in self._rows_now(b, key).values():
            for column in translate.CONTAINER_COLUMNS.get(row._table.name, ()):
                for child in self.replica.children.get((row.uuid, column), ()):
                    owner = self.replica.owner_of.get(child)
                    if owner is None:
                        foreign += 1
                    elif owner[0] != key and owner[0] not in b.gone:
                        held = self.replica.held.get(owner[0])
                        children.append((held.root if held else "", owner[0][0], owner[0][1]))
        if foreign:
            raise ObjectRejected(f"has_children: {label(key)} holds {foreign} NB rows Converge did not write; "
                                 f"deleting it would delete them", index=index, status=409)
        if children:
            raise ObjectRejected(f"has_children: {len(children)} objects still hang below {label(key)}",
                                 index=index, status=409, children=tuple(sorted(set(children))))
        if key[0] == "router_interface":  # its router's SNAT rows follow (read before the rows go)
            b.routers.update(self._router_of_interface(key))
        self._remove_rows(b, key)
        if key in self.replica.empty_of or key in b.empties:
            b.empties[key] = None
        b.gone.add(key)
        b.written.pop(key, None)
        b.specs.pop(key, None)
        b.primaries.pop(key, None)

    def _rows_now(self, b: _Batch, key: ObjectKey) -> dict[str, Any]:
        if key in b.written:
            return b.written[key]
        return {} if key in b.gone else self.replica.rows(key)

    def _router_of_interface(self, key: ObjectKey) -> Iterable[ObjectKey]:
        for row in self.replica.rows(key).values():
            for container, _ in self.replica.containers.get(row.uuid, ()):
                owner = self.replica.owner_of.get(container)
                if owner is not None and owner[0][0] == "router":
                    yield owner[0]

    def _remove_rows(self, b: _Batch, key: ObjectKey) -> None:
        for row in self._rows_now(b, key).values():
            self._drop_row(b, row)
        b.written.pop(key, None)

    def _drop_row(self, b: _Batch, row: Any) -> None:
        for container_uuid, column in list(self.replica.containers.get(row.uuid, ())):
            container = self.replica.row(container_uuid) or self._shared_row(container_uuid)
            if container is not None:
                container.delvalue(column, row)
        row.delete()

    # -- derived rows and stamps ------------------------------------------------------------------------
    def _derive_snat(self, b: _Batch, router: ObjectKey) -> None:
        rows = self._rows_now(b, router)
        lr = rows.get("lr")
        if lr is None:
            return
        ext = b.specs[router][0][1] if router in b.specs else dict(lr.external_ids)
        snat_ip = ext.get("converge:snat_ip")
        networks = sorted(self._interface_networks(b, router, lr))
        wanted = translate.snat_rows(router[1], snat_ip, networks) if snat_ip else ()
        old = {k: row for k, row in rows.items() if k.startswith("snat:")}
        clean = router in b.specs or self._clean(router)
        forms = b.specs.get(router, [])  # not put in this batch: its other rows stay as the replica has them
        for spec in wanted:
            ext_row = {str(k): str(v) for k, v in (spec.columns.get("external_ids") or {}).items()}
            ext_row.update({ROW: spec.key, OWNER: label(router)})
            row = self._write_row(b, -1, old.pop(spec.key, None), spec)
            _set_if_changed(row, "external_ids", ext_row)
            b.written.setdefault(router, dict(rows))[spec.key] = row
            forms.append((spec, ext_row))
        for key, row in old.items():
            self._drop_row(b, row)
            b.written.setdefault(router, dict(rows)).pop(key, None)
        if router not in b.specs and clean and (wanted or old):
            self._restamp(b, router, lr, forms)

    def _interface_networks(self, b: _Batch, router: ObjectKey, lr: Any) -> set[str]:
        """IPv4 networks (cidrs) of the router's interfaces once the batch is applied."""
        found: set[str] = set()
        owners: set[ObjectKey] = set()
        for child in self.replica.children.get((lr.uuid, "ports"), ()):
            owner = self.replica.owner_of.get(child)
            if owner is not None and owner[0][0] == "router_interface":
                owners.add(owner[0])
        for key, forms in b.specs.items():
            if key[0] == "router_interface" and any(s.parent and s.parent.owner == router for s, _ in forms):
                owners.add(key)
        for key in owners - b.gone:
            for row in self._rows_now(b, key).values():
                if row._table.name != "Logical_Router_Port":
                    continue
                for net in row.networks:
                    iface = ipaddress.ip_interface(net)
                    if iface.version == 4:
                        found.add(str(iface.network))
        return found

    def _clean(self, key: ObjectKey) -> bool:
        held = self.replica.held.get(key)
        primary = self.replica.rows(key)
        if held is None or not primary:
            return False
        return any(held.digest == int(r.external_ids.get(DIGEST, "0") or "0", 16) for r in primary.values()
                   if KIND in r.external_ids)

    def _restamp(self, b: _Batch, router: ObjectKey, lr: Any, snat_forms: list[tuple[RowSpec, dict[str, str]]]
                 ) -> None:
        """The router was right before; its SNAT rows moved with its interfaces: stamp the new rows."""
        forms = [f for f in self.replica.normal_forms(router) if not f["key"].startswith("snat:")]
        forms += [self.replica.spec_form(spec, ext, self._ref_identity(b)) for spec, ext in snat_forms]
        ext = dict(lr.external_ids)
        ext[ROWS] = rows_hash(forms)
        _set_if_changed(lr, "external_ids", ext)

    def _ref_identity(self, b: _Batch) -> Any:
        def resolve(ref: RowRef) -> str | None:
            return f"{label(ref.owner)}:{ref.row}" if self._resolve(b, ref) is not None else None
        return resolve

    def _stamp(self, b: _Batch) -> None:
        resolve = self._ref_identity(b)
        for key, (row, ext, digest) in b.primaries.items():
            forms = [self.replica.spec_form(spec, e, resolve) for spec, e in b.specs.get(key, [])]
            stamped = dict(ext)
            stamped[DIGEST] = canonical.hex256(digest)
            stamped[ROWS] = rows_hash(forms)
            _set_if_changed(row, "external_ids", stamped)


def _set_if_changed(row: Any, column: str, value: Any) -> None:
    try:
        current = getattr(row, column)
    except AttributeError:  # a row inserted by this transaction
        setattr(row, column, value)
        return
    if plain_value(current, _uuid_of) != plain_value(value, _uuid_of):
        setattr(row, column, value)


def _uuid_of(value: Any) -> str:
    return str(value if isinstance(value, uuid.UUID) else getattr(value, "uuid", value))


def form_of(value: Mapping[str, Any]) -> bytes:
    return canonical.canonical_json(value)


class RestoreShared(BaseCommand):  # type: ignore[misc]
    """Put back the drop ACLs of ``neutron_pg_drop`` that someone deleted or edited.

    The shared group belongs to no object, so no fingerprint sees its ACLs; yet without them every port
    with port security is open. The backend runs this whenever the group or one of its ACLs changes: an
    expected ACL (same direction, priority, match, action) that is missing is inserted; an ACL of the
    group that matches none is removed. Nothing happens while the group itself is absent: the next port
    written recreates it whole."""

    def __init__(self, api: Any, *, replica: Replica) -> None:
        super().__init__(api)
        self.replica = replica
        self.restored = 0

    def run_idl(self, txn: Any) -> None:
        specs = [s for s in translate.shared_rows() if s.table == "ACL"]
        with self.replica.lock:
            group_uuid = self.replica.shared.get(PG_DROP)
            group = self.api.idl.tables["Port_Group"].rows.get(group_uuid) if group_uuid else None
            if group is None:
                return
            wanted = {_acl_key(s.columns): s for s in specs}
            for acl in list(group.acls):
                if _acl_key({c: getattr(acl, c) for c in ("direction", "priority", "match", "action")}) in wanted:
                    wanted.pop(_acl_key({c: getattr(acl, c) for c in ("direction", "priority", "match", "action")}))
                else:
                    group.delvalue("acls", acl)
                    self.restored += 1
            for spec in wanted.values():
                row = txn.insert(self.api.idl.tables["ACL"])
                for column in translate.MANAGED["ACL"]:
                    setattr(row, column, spec.columns.get(column))
                group.addvalue("acls", row)
                self.restored += 1


def _acl_key(columns: Mapping[str, Any]) -> tuple[str, int, str, str]:
    return (str(columns["direction"]), int(columns["priority"]), str(columns["match"]), str(columns["action"]))
