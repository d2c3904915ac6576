"""HTTP client for the fabric protocol, with failover across controller URLs and a breaker per URL.

This module is the edge where httpx's exceptions and HTTP statuses become the project's errors
(core/errors.py): transport errors and 5xx → ControllerUnavailable (after trying every URL whose breaker
allows it), 412 ``fenced`` → Fenced (the root's fence names a newer lease epoch), any other 412 →
PreconditionFailed, 4xx naming an operation → ObjectRejected, 401 →
ConfigurationError, anything undocumented → ProtocolViolation. The token is sent as a bearer header and
never included in an error message or log line; the client keeps it for the event stream it opens.
``https://`` URLs are verified against ``tls.ca_file`` (else the system's CAs), with a client certificate
when one is configured; a failed handshake is reported as one sentence naming why (``core.tls``).

The fabric protocol has no push of changes made behind the engine's back: :meth:`FabricClient.on_drift`
registers nothing, and the worker's periodic sweep (one paged ``GET /v1/roots``) finds such drift.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from converge.backends.base import (
    BucketEntry,
    Comparison,
    Delete,
    EndpointHealth,
    Operation,
    PortStatus,
    Put,
    RootSummary,
    Traffic,
)
from converge.backends.breaker import CircuitBreaker
from converge.backends.fabric import events
from converge.core import canonical, sums
from converge.core.canonical import ObjectDoc
from converge.core.clock import Clock, SystemClock
from converge.core.errors import (
    ConfigurationError,
    ControllerUnavailable,
    Fenced,
    ObjectRejected,
    PreconditionFailed,
    ProtocolViolation,
    Unauthorized,
)
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind
from converge.core.tls import CLIENT_CERTIFICATE_REQUIRED, TlsFiles, client_context, describe_failure

log = logging.getLogger(__name__)
# httpx logs every request at INFO (thousands of lines a minute from a busy worker): requests are this
# module's DEBUG lines instead, and INFO says what an operator needs.
logging.getLogger("httpx").setLevel(logging.WARNING)


class FabricClient:
    def __init__(self, urls: Sequence[str], token: str, *, timeout: float = 10.0,
                 connect_timeout: float = 2.0, writer: str = "converge", clock: Clock | None = None,
                 breaker_threshold: int = 3, breaker_reset: float = 5.0, tls: TlsFiles | None = None) -> None:
        if not urls:
            raise ConfigurationError("no controller URL configured")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigurationError(f"controller URL {url!r} must start with http:// or https://")
        self.urls = [u.rstrip("/") for u in urls]
        clk = clock or SystemClock()
        self.breakers = {u: CircuitBreaker(breaker_threshold, breaker_reset, clk, name=u) for u in self.urls}
        self._preferred = 0
        self._unavailable = False
        self._refused: set[str] = set()  # URLs whose last answer refused the token (health: "unauthorized")
        self._available: list[Callable[[], None]] = []
        self._token = token  # for the event stream; never logged
        self._followers: list[Callable[[], None]] = []
        self._followers_lock = threading.Lock()
        self.traffic = Traffic()
        self._tls = _verification(tls or TlsFiles(), self.urls)
        self._client_cert = bool(tls and tls.cert_file)
        self._http = httpx.Client(
            verify=self._tls, timeout=httpx.Timeout(timeout, connect=connect_timeout),
            headers={"Authorization": f"Bearer {token}", "X-Converge-Writer": writer,
                     "User-Agent": "converge", "Accept": "application/json"},
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8))
        # Every byte of a small repair request counts (BENCHMARKS.md): drop what HTTP/1.1 implies anyway
        # (keep-alive) and what we would not use (compression of small bodies).
        for name in ("Accept-Encoding", "Connection"):
            self._http.headers.pop(name, None)

    # -- transport -----------------------------------------------------------------------------------
    def _order(self) -> list[str]:
        n = len(self.urls)
        return [self.urls[(self._preferred + i) % n] for i in range(n)]

    def _send(self, method: str, path: str, *, purpose: str, body: bytes | None = None,
              headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
              ) -> httpx.Response:
        errors: list[str] = []
        for url in self._order():
            breaker = self.breakers[url]
            if not breaker.allows():
                errors.append(f"{url}: circuit open ({breaker.last_error})")
                continue
            try:
                resp = self._http.request(method, url + path, content=body, headers=headers, params=params)
            except httpx.TransportError as err:
                reason = _transport_failure(err, url, client_cert=self._client_cert)
                breaker.failed(reason)
                errors.append(f"{url}: {reason}")
                continue
            self.traffic.add(purpose, _request_size(resp.request), _response_size(resp))
            log.debug("%s %s%s: HTTP %d", method, url, path, resp.status_code)
            if resp.status_code != 401:
                self._refused.discard(url)
            if resp.status_code >= 500:
                breaker.failed(f"HTTP {resp.status_code}")
                errors.append(f"{url}: HTTP {resp.status_code} {_message(resp)}")
                continue
            breaker.succeeded()
            self._preferred = self.urls.index(url)
            if resp.status_code == 401:  # an answer, but not one worth waking the roots waiting out a backoff
                self._refused.add(url)
                raise Unauthorized(f"controller {url} refused the configured token (401): check [converge] token "
                                   "or token_file")
            if self._unavailable:  # the first answer after "no controller answered": wake the waiters
                self._unavailable = False
                for callback in list(self._available):
                    callback()
            if resp.status_code == 403 and _json_or_empty(resp).get("error") == CLIENT_CERTIFICATE_REQUIRED:
                raise ConfigurationError(f"controller {url}: TLS: the controller requires a client certificate "
                                         "([converge] certfile, keyfile)")
            return resp
        self._unavailable = True
        raise ControllerUnavailable("no controller answered: " + "; ".join(errors))

    def _get(self, path: str, *, purpose: str, params: Mapping[str, str] | None = None) -> Any:
        resp = self._send("GET", path, purpose=purpose, params=params)
        if resp.status_code != 200:
            raise ProtocolViolation(f"GET {path}: unexpected HTTP {resp.status_code} {_message(resp)}")
        return _json(resp)

    # -- Backend -------------------------------------------------------------------------------------
    def apply(self, root: RootId, *, if_match: int, operations: Sequence[Operation], epoch: int = 0) -> int:
        body = json.dumps({"operations": [_op_json(op) for op in operations]},
                          separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"If-Match": canonical.etag(if_match), "Content-Type": "application/json"}
        if epoch > 0:  # epoch 0 holds no lease: the controller neither checks nor moves the root's fence
            headers["X-Converge-Epoch"] = str(epoch)
        resp = self._send("POST", f"/v1/roots/{_p(root)}/batch", purpose="batch", body=body, headers=headers)
        if resp.status_code == 200:
            return _etag(resp)
        data = _json_or_empty(resp)
        if resp.status_code == 412 and data.get("error") == "fenced":
            fence = data.get("epoch")
            if not isinstance(fence, int) or isinstance(fence, bool):
                raise ProtocolViolation(f"batch on root {root}: 412 fenced without an integer epoch")
            raise Fenced(f"root {root}: {_message(resp)}", current=_etag(resp), epoch=fence)
        if resp.status_code == 412:
            raise PreconditionFailed(f"root {root}: ETag moved on the controller", current=_etag(resp))
        if resp.status_code in (400, 404, 409, 413, 422):
            index = data.get("index")
            raise ObjectRejected(f"{data.get('error', resp.status_code)}: {data.get('message', resp.text)}",
                                 index=index if isinstance(index, int) else None, status=resp.status_code,
                                 parent=_missing_parent(data), children=_children(data))
        raise ProtocolViolation(f"batch on root {root}: unexpected HTTP {resp.status_code} {_message(resp)}")

    def root_etag(self, root: RootId) -> int:
        return canonical.parse_etag(self._get(f"/v1/roots/{_p(root)}", purpose="root")["etag"])

    def roots(self) -> Iterator[RootSummary]:
        after: str | None = None
        while True:
            params = {"limit": "1000"} | ({"after": after} if after else {})
            page = self._get("/v1/roots", purpose="sweep", params=params)
            for item in page["roots"]:
                yield RootSummary(RootId(item["root"]), canonical.parse_etag(item["etag"]), int(item["objects"]))
            after = page.get("next")
            if not after:
                return

    def compare_groups(self, root: RootId, believed: Mapping[str, int], *, width: int,
                       listed: int) -> Comparison:
        params = {"width": str(width), "groups": sums.pack(sums.group_row(believed), width), "list": str(listed)}
        data = self._get(f"/v1/roots/{_p(root)}/diff", purpose="repair:diff", params=params)
        return Comparison(canonical.parse_etag(data["etag"]),
                          {g: _entries(listing) for g, listing in data["listed"].items()},
                          {g: sums.unpack(row, width) for g, row in data["buckets"].items()})

    def entries(self, root: RootId, buckets: Sequence[int]) -> list[BucketEntry]:
        params = {"buckets": ",".join(canonical.bucket_name(b) for b in sorted(buckets))}
        return _entries(self._get(f"/v1/roots/{_p(root)}/entries", purpose="repair:entries", params=params)["objects"])

    def objects(self, root: RootId) -> Iterator[ObjectDoc]:
        after: str | None = None
        while True:
            params = {"limit": "1000"} | ({"after": after} if after else {})
            page = self._get(f"/v1/roots/{_p(root)}/objects", purpose="objects", params=params)
            for o in page["objects"]:
                yield ObjectDoc(Kind(o["kind"]), ObjectId(o["id"]), o["attributes"], int(o["revision"]))
            after = page.get("next")
            if not after:
                return

    def object_status(self, root: RootId, kind: Kind, oid: str) -> str | None:
        """The operational status the controller reports for one object (``up``/``down`` for ports), or
        None if it does not hold the object."""
        resp = self._send("GET", f"/v1/roots/{_p(root)}/objects/{kind.value}/{_p(oid)}", purpose="status")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise ProtocolViolation(f"GET object {kind.value}/{oid}: unexpected HTTP {resp.status_code}")
        status = _json(resp).get("status")
        return str(status) if status is not None else None

    def port_status(self, root: RootId, port_id: ObjectId) -> PortStatus | None:
        status = self.object_status(root, Kind.PORT, port_id)
        if status is None:
            return None
        try:
            return PortStatus(status)
        except ValueError:
            raise ProtocolViolation(f"port {port_id}: unknown status {status!r}") from None

    def follow_ports(self, *, on_up: Callable[[ObjectId], None],
                     on_connect: Callable[[], None] | None = None) -> Callable[[], None]:
        """Follow ``GET /v1/events`` on a daemon thread (reconnecting with ``Last-Event-ID`` across the
        URLs); ``on_connect`` runs after every (re)connection. :meth:`close` stops it too."""
        stop = events.follow_ports(self.urls, self._token, on_up=on_up, on_connect=on_connect, verify=self._tls)
        with self._followers_lock:
            self._followers.append(stop)
        return stop

    def on_available(self, callback: Callable[[], None]) -> None:
        self._available.append(callback)

    def on_drift(self, callback: Callable[[RootId], None]) -> None:
        """Nothing to register: the controller pushes no news of changes made behind our back, so the
        callback is never called and the worker's sweep finds such drift."""

    def health(self) -> list[EndpointHealth]:
        return [EndpointHealth(u, "unauthorized", b.failures, "refused the configured token (401)")
                if u in self._refused else EndpointHealth(u, b.state.value, b.failures, b.last_error)
                for u, b in self.breakers.items()]

    def close(self) -> None:
        with self._followers_lock:
            followers, self._followers = self._followers, []
        for stop in followers:
            stop()
        self._http.close()


def _verification(files: TlsFiles, urls: Sequence[str]) -> ssl.SSLContext:
    """The TLS context of every connection (unused by ``http://`` URLs); says so in the log when the
    operator turned verification off."""
    if files.insecure and any(u.startswith("https://") for u in urls):
        log.warning("TLS verification of the controller's certificate is off ([converge] insecure = true): "
                    "anyone on the path can impersonate the controller and read the token")
    return client_context(files)


def _transport_failure(err: httpx.TransportError, url: str, *, client_cert: bool) -> str:
    """Why a request got no answer, in one line: a TLS handshake's reason when that was it."""
    reason = describe_failure(err)
    if reason:
        return reason
    reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    if client_cert and url.startswith("https://") and isinstance(err, httpx.RemoteProtocolError):
        # With TLS 1.3 a server refusing our certificate closes the connection after our handshake ended.
        reason += " (a controller that does not trust our client certificate closes the connection so)"
    return reason


def _p(segment: str) -> str:
    return quote(segment, safe="")


def _entries(listing: Mapping[str, str]) -> list[BucketEntry]:
    """``{"kind/id": digest}`` as entries (an id holds no ``/``)."""
    found = []
    for key, digest in listing.items():
        kind, _, oid = key.partition("/")
        found.append(BucketEntry(kind, oid, int(digest, 16)))
    return found


def _op_json(op: Operation) -> dict[str, Any]:
    if isinstance(op, Put):
        return {"op": "put", "object": op.doc.to_json()}
    assert isinstance(op, Delete)
    return {"op": "delete", "kind": op.kind.value, "id": op.id}


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise ProtocolViolation(f"{resp.request.method} {resp.request.url.path}: body is not JSON") from None


def _json_or_empty(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _missing_parent(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """The parent a ``409 missing_parent`` names: (kind, id)."""
    parent = data.get("parent")
    if data.get("error") != "missing_parent" or not isinstance(parent, dict):
        return None
    return (str(parent.get("kind")), str(parent.get("id")))


def _children(data: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """The children a ``409 has_children`` names: (root, kind, id) each."""
    children = data.get("children")
    if data.get("error") != "has_children" or not isinstance(children, list):
        return ()
    return tuple((str(c.get("root")), str(c.get("kind")), str(c.get("id"))) for c in children if isinstance(c, dict))


def _message(resp: httpx.Response) -> str:
    data = _json_or_empty(resp)
    return str(data.get("message") or data.get("error") or resp.reason_phrase)


def _etag(resp: httpx.Response) -> int:
    value = resp.headers.get("ETag") or _json_or_empty(resp).get("etag")
    if not value:
        raise ProtocolViolation(f"{resp.request.url.path}: answer without an ETag")
    try:
        return canonical.parse_etag(value)
    except canonical.BadETag as err:
        raise ProtocolViolation(str(err)) from None


def _request_size(req: httpx.Request) -> int:
    head = len(req.method) + len(str(req.url)) + sum(len(k) + len(v) + 4 for k, v in req.headers.items())
    return head + len(req.content)


def _response_size(resp: httpx.Response) -> int:
    return 12 + sum(len(k) + len(v) + 4 for k, v in resp.headers.items()) + len(resp.content)
