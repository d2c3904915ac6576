"""The protocol's ``/v1`` handlers: the batch write and the reads (docs/protocol.md, "Endpoints").

Handlers translate between HTTP and the store: path and query parameters are validated here, bodies are
parsed by ``operations.py``, and every refusal is a :class:`FabricError` that the error middleware in
``app.py`` answers. Every batch attempt that reaches the handler is audited, refused ones too, with the
lease epoch it carried; a fenced epoch is refused before anything else is looked at (``fence.py``).
SQLite calls run synchronously in the event loop: they are short, and running them one at a time is what
serialises batches. Registered by ``app.create_app``.
"""

from __future__ import annotations

from aiohttp import web

from converge.core import sums as short_sums
from converge.core.canonical import bucket_name, etag, group_sums, hex256
from converge.core.ids import InvalidId, root_id
from converge.fabric import audit as audit_log
from converge.fabric import fence, queries
from converge.fabric.errors import ErrorCode, FabricError, bad_json, not_found
from converge.fabric.faults import Faults
from converge.fabric.httpio import (
    Settings,
    flag_param,
    int_param,
    json_response,
    limit_param,
    path_root,
    read_body,
)
from converge.fabric.metrics import Metrics
from converge.fabric.operations import Key, count_operations, decode_json, parse_batch, parse_key
from converge.fabric.ports import PortUpTimer
from converge.fabric.state import Store

_HEX = "0123456789abcdef"


class Api:
    def __init__(self, *, store: Store, settings: Settings, faults: Faults, ports: PortUpTimer,
                 metrics: Metrics) -> None:
        self.store = store
        self.settings = settings
        self.faults = faults
        self.ports = ports
        self.metrics = metrics

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/roots/{root}/batch", self.batch),
            web.get("/v1/roots", self.roots),
            web.get("/v1/roots/{root}", self.root),
            web.get("/v1/roots/{root}/buckets", self.buckets),
            web.get("/v1/roots/{root}/buckets/{bucket}", self.bucket),
            web.get("/v1/roots/{root}/diff", self.diff),
            web.get("/v1/roots/{root}/entries", self.entries),
            web.get("/v1/roots/{root}/objects", self.objects),
            web.get("/v1/roots/{root}/objects/{kind}/{id}", self.object),
            web.get("/v1/audit", self.audit),
        ]

    async def batch(self, request: web.Request) -> web.Response:
        root = path_root(request)
        writer = request.headers.get("X-Converge-Writer")
        if_match = request.headers.get("If-Match")
        claimed = 0
        epoch: int | None = None
        try:
            epoch = fence.parse_epoch(request.headers.get(fence.HEADER))
            # A fenced writer's batch is moot whatever it holds: say so before reading it. The store
            # checks again as it applies (the body is read in between, and other batches may land).
            self.store.check_fence(root, epoch)
            if if_match is None:
                raise FabricError(ErrorCode.PRECONDITION_REQUIRED,
                                  f"a batch needs If-Match with root {root}'s ETag (an empty root's is "
                                  f"{etag(0)})")
            value = decode_json(await read_body(request))
            claimed = count_operations(value)
            operations, lost = self.faults.lose(parse_batch(value, max_operations=self.settings.max_operations))
            result = self.store.apply_batch(root, operations, if_match=if_match, writer=writer,
                                            checks=self.faults.checks(), epoch=epoch)
        except FabricError as exc:
            self.store.record_refused(root, writer=writer, if_match=if_match, status=exc.status,
                                      operations=claimed, epoch=epoch)
            self.metrics.batch(exc.status)
            raise
        self.metrics.batch(200, operations=result.applied)
        self.ports.created(result.created_ports)
        tag = etag(result.fingerprint)
        return json_response({"etag": tag, "applied": result.applied + lost, "objects": result.objects},
                             headers={"ETag": tag})

    async def roots(self, request: web.Request) -> web.Response:
        after_text = request.query.get("after")
        try:
            after = None if after_text is None else root_id(after_text)
        except InvalidId as exc:
            raise FabricError(ErrorCode.INVALID_ID, f"query parameter 'after': {exc}") from None
        page, following = queries.roots_page(self.store, after=after, limit=limit_param(request))
        listed = []
        for root in page:
            fingerprint, count = queries.root_summary(self.store, root)
            listed.append({"root": root, "etag": etag(fingerprint), "objects": count})
        return json_response({"roots": listed, "next": following})

    async def root(self, request: web.Request) -> web.Response:
        root = path_root(request)
        fingerprint, count = queries.root_summary(self.store, root)
        tag = etag(fingerprint)
        return json_response({"root": root, "etag": tag, "objects": count}, headers={"ETag": tag})

    async def buckets(self, request: web.Request) -> web.Response:
        root = path_root(request)
        depth = int_param(request, "depth", 2, minimum=1)
        if depth not in (1, 2):
            raise bad_json("query parameter 'depth' must be 1 (groups) or 2 (buckets)")
        prefix = request.query.get("prefix")
        if prefix is not None and (len(prefix) != 1 or prefix.lower() not in _HEX):
            raise bad_json(f"query parameter 'prefix' must be one hex digit, not {prefix!r}")
        sums = queries.bucket_sums(self.store, root)
        if prefix is not None:
            sums = {b: s for b, s in sums.items() if bucket_name(b)[0] == prefix.lower()}
        body: dict[str, object] = {"etag": etag(self.store.index.fingerprint(root))}
        if depth == 1:
            body["groups"] = {g: hex256(s) for g, s in sorted(group_sums(sums).items())}
        else:
            body["buckets"] = {bucket_name(b): hex256(s) for b, s in sorted(sums.items())}
        return json_response(body)

    async def bucket(self, request: web.Request) -> web.Response:
        root = path_root(request)
        name = request.match_info["bucket"].lower()
        if len(name) not in (1, 2) or any(c not in _HEX for c in name):
            raise not_found(f"no bucket {name!r}: buckets are named 00 to ff, groups 0 to f")
        full = flag_param(request, "full")
        sums = queries.bucket_sums(self.store, root)
        if len(name) == 1:  # a whole group: saves a round trip when a group holds few objects
            first = int(name, 16) * 16
            listed = queries.bucket_objects(self.store, root, first, full=full, last=first + 15)
            total = group_sums({b: s for b, s in sums.items() if first <= b <= first + 15}).get(name, 0)
            return json_response({"group": name, "sum": hex256(total), "objects": listed})
        bucket = int(name, 16)
        listed = queries.bucket_objects(self.store, root, bucket, full=full)
        return json_response({"bucket": name, "sum": hex256(sums.get(bucket, 0)), "objects": listed})

    async def diff(self, request: web.Request) -> web.Response:
        """Localise drift in one call: the caller's 16 group sums, cut to ``width`` bytes, against ours."""
        root = path_root(request)
        width = int_param(request, "width", short_sums.FULL, minimum=1)
        if width > short_sums.FULL:
            raise bad_json(f"query parameter 'width' must be from 1 to {short_sums.FULL}, not {width}")
        try:
            believed = short_sums.unpack(request.query.get("groups", "").lower(), width)
        except ValueError as exc:
            raise bad_json(f"query parameter 'groups': {exc}") from None
        listed, buckets = queries.compare_groups(self.store, root, believed, width=width,
                                                 listed=int_param(request, "list", 16))
        return json_response({"etag": etag(self.store.index.fingerprint(root)), "listed": listed,
                              "buckets": buckets})

    async def entries(self, request: web.Request) -> web.Response:
        root = path_root(request)
        names = request.query.get("buckets", "").lower().split(",")
        if not 1 <= len(names) <= 256 or any(len(n) != 2 or n.strip(_HEX) for n in names):
            raise bad_json("query parameter 'buckets' must list bucket names (00 to ff) separated by commas")
        return json_response({"objects": queries.listing(self.store, root, sorted({int(n, 16) for n in names}))})

    async def objects(self, request: web.Request) -> web.Response:
        root = path_root(request)
        after_text = request.query.get("after")
        after: Key | None = None
        if after_text is not None:
            kind_text, slash, id_text = after_text.partition("/")
            if not slash:
                raise FabricError(ErrorCode.INVALID_ID,
                                  f"query parameter 'after' must be kind/id, not {after_text!r}")
            after = parse_key(kind_text, id_text, where="after")
        listed, following = queries.objects_page(self.store, root, after=after, limit=limit_param(request))
        return json_response({"objects": listed, "next": following})

    async def object(self, request: web.Request) -> web.Response:
        root = path_root(request)
        key = parse_key(request.match_info["kind"], request.match_info["id"], where="path")
        found = queries.get_object(self.store, root, key)
        if found is None:
            raise not_found(f"no {key[0].value} {key[1]} in root {root}")
        return json_response(found)

    async def audit(self, request: web.Request) -> web.Response:
        entries, following = audit_log.read(self.store.conn, after=int_param(request, "after", 0),
                                        limit=limit_param(request))
        return json_response({"entries": entries, "next": following})
