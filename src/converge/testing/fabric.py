"""A reference fabric controller in a child process, for functional tests, benchmarks and the demo.

Why a real process: the sync engine must be tested against real sockets, restarts and refused
connections, not an in-process fake. :class:`FabricProcess` generates fresh tokens (files of mode 0600 in
``workdir``), starts ``python -m converge.fabric`` on a free loopback port, waits for ``/healthz``, and
stops it by its PID (SIGTERM, then SIGKILL after 10 s; never by name). With ``tls=`` (:class:`FabricTls`)
it serves HTTPS, optionally requiring client certificates, and its own helpers verify and present them.
``restart()`` comes back on the same port and database, so clients configured with :attr:`url` simply
reconnect. Called by ``tests/functional/conftest.py``, the benchmarks and ``converge demo``.

:func:`stale_writes` is the check a chaos run ends with: no write a stale lease made was applied.
"""

from __future__ import annotations

import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from converge.core import canonical
from converge.core.ids import ObjectId
from converge.core.kinds import Kind

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def put_op(kind: str, oid: str, revision: int = 0, **attributes: Any) -> dict[str, Any]:
    """A batch operation that creates or replaces one object."""
    return {"op": "put", "object": {"kind": kind, "id": oid, "attributes": attributes, "revision": revision}}


def delete_op(kind: str, oid: str) -> dict[str, Any]:
    """A batch operation that deletes one object if present."""
    return {"op": "delete", "kind": kind, "id": oid}


def expected_etag(objects: Iterable[Mapping[str, Any]]) -> str:
    """The ETag a root holding ``objects`` must have, recomputed from the documents alone."""
    return canonical.etag(canonical.combine(
        canonical.ObjectDoc(Kind(o["kind"]), ObjectId(o["id"]), o["attributes"], o["revision"]).digest()
        for o in objects))


@dataclass(frozen=True)
class StaleWrite:
    """An applied batch (audit entry ``seq``) whose lease ``epoch`` was below ``fence``, the highest epoch
    applied to its root before it (last by entry ``fence_seq``). ``after_wipe``: a wipe had forgotten the
    fence (docs/protocol.md), so the controller could not refuse this write (no epoch applied since the
    wipe is above it); False means the controller held a fence above it and still applied it."""

    root: str
    seq: int
    writer: str | None
    epoch: int
    fence: int
    fence_seq: int
    after_wipe: bool


def stale_writes(entries: Iterable[Mapping[str, Any]]) -> dict[str, list[StaleWrite]]:
    """Per root, every applied write whose epoch is below an epoch already applied to that root.

    ``entries`` are ``GET /v1/audit`` entries, oldest first. Only applied batches (status 200) that carry
    an epoch count: writes without one (or epoch 0) claim no lease, refused ones changed nothing, and
    ``fault:*`` entries have none. Every such write is reported, also one a wipe let through (flagged
    ``after_wipe``; a wipe that found no object logs nothing, and what it let through is then not
    flagged). Empty in a correct system. It sees only what the audit log still holds (the reference
    controller keeps the newest 200,000 entries).
    """
    highest: dict[str, tuple[int, int]] = {}  # root -> (epoch, seq of the last write that applied it)
    since_wipe: dict[str, int] = {}  # root -> the highest epoch applied since the last wipe: its fence
    found: dict[str, list[StaleWrite]] = {}
    for e in entries:
        if e["writer"] == "fault:wipe":
            since_wipe.clear()  # a wipe forgets every root's fence at once
        epoch = e.get("epoch")
        if e["status"] != 200 or not epoch:
            continue
        root = e["root"]
        fence, fence_seq = highest.get(root, (0, 0))
        if epoch < fence:
            found.setdefault(root, []).append(StaleWrite(root, e["seq"], e["writer"], epoch, fence, fence_seq,
                                                         after_wipe=epoch >= since_wipe.get(root, 0)))
        else:
            highest[root] = (epoch, e["seq"])
        since_wipe[root] = max(epoch, since_wipe.get(root, 0))
    return found


class FabricStartError(RuntimeError):
    """The controller exited or did not answer /healthz in time; the message ends with its log tail."""


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    path.chmod(0o600)  # O_CREAT's mode does not apply to a file that already existed


@dataclass(frozen=True)
class FabricTls:
    """HTTPS for a :class:`FabricProcess`: the server's certificate and key and the CA that signed them
    (the launcher's own requests verify with it); with ``client_ca`` the controller requires a client
    certificate signed by it, and the launcher presents ``client_cert`` / ``client_key``."""

    cert: Path
    key: Path
    ca: Path
    client_ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def args(self) -> list[str]:
        """The controller's ``--tls-*`` options."""
        args = ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]
        return args + (["--tls-client-ca", str(self.client_ca)] if self.client_ca else [])

    def context(self) -> ssl.SSLContext:
        """What the launcher's requests verify the controller with (and present, when it has a client cert)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if self.client_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key) if self.client_key else None)
        return context


class FabricProcess:
    def __init__(self, workdir: Path, *, faults: bool = True, port_up_delay: float = 0.5,
                 extra_args: Sequence[str] = (), tls: FabricTls | None = None) -> None:
        self.workdir = Path(workdir).resolve()  # config files and servers need absolute paths
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.faults = faults
        self.port_up_delay = port_up_delay
        self.extra_args = list(extra_args)
        self.tls = tls
        self._verify: ssl.SSLContext | bool = tls.context() if tls else True
        self.db_path = self.workdir / "fabric.sqlite"
        self.log_path = self.workdir / "fabric.log"
        self.token_file = self.workdir / "api-token"
        self.admin_token_file = self.workdir / "admin-token"
        self.port_file = self.workdir / "fabric.port"
        self.token = secrets.token_urlsafe(32)
        self.admin_token = secrets.token_urlsafe(32)
        _write_secret(self.token_file, self.token)
        _write_secret(self.admin_token_file, self.admin_token)
        self.port = 0  # chosen by the OS on the first start, then kept
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the controller has not been started")
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the controller is not running")
        return self._process.pid

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "converge.fabric", "--listen", f"127.0.0.1:{self.port}",
               "--port-file", str(self.port_file), "--db", str(self.db_path),
               "--token-file", str(self.token_file), "--port-up-delay", str(self.port_up_delay)]
        if self.faults:
            cmd += ["--faults", "--admin-token-file", str(self.admin_token_file)]
        if self.tls:
            cmd += self.tls.args()
        return cmd + self.extra_args

    def start(self) -> FabricProcess:
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError(f"the controller is already running (pid {self._process.pid})")
        self.port_file.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items()
               if k not in ("CONVERGE_FABRIC_TOKEN", "CONVERGE_FABRIC_ADMIN_TOKEN")}
        with open(self.log_path, "ab") as log:
            # A session of its own: a Ctrl-C meant for the test run does not reach the controller,
            # which is stopped by stop() (or left running on purpose by `converge demo --keep-running`).
            self._process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise FabricStartError(f"the controller exited with {self._process.returncode}\n{self.log_tail()}")
            if self.port_file.exists():
                text = self.port_file.read_text().strip()
                if text:
                    self.port = int(text)
                    try:
                        if httpx.get(f"{self.url}/healthz", timeout=1.0, verify=self._verify).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
            time.sleep(0.02)
        self.stop()
        raise FabricStartError(f"the controller did not answer /healthz within {START_TIMEOUT} s\n"
                               f"{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM its PID, wait up to 10 s, then SIGKILL; return the exit code (None if not running)."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def restart(self) -> FabricProcess:
        """Stop and start again on the same database and the same port."""
        self.stop()
        return self.start()

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> FabricProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- HTTP helpers ---------------------------------------------------------------------------------

    def headers(self, *, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token if admin else self.token}"}

    def client(self, *, admin: bool = False, timeout: float = 10.0) -> httpx.Client:
        """An httpx client on :attr:`url` carrying the API (or admin) token."""
        return httpx.Client(base_url=self.url, headers=self.headers(admin=admin), timeout=timeout,
                            verify=self._verify)

    def admin(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        """Call the admin API (``path`` relative to ``/v1/admin``, or absolute); raise on an error status."""
        if not path.startswith("/"):
            path = f"/v1/admin/{path}"
        response = httpx.request(method, self.url + path, json=json, headers=self.headers(admin=True),
                                 timeout=10.0, verify=self._verify)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def batch(self, root: str, operations: Sequence[Mapping[str, Any]], *, if_match: str | None = None,
              writer: str | None = None, epoch: int | None = None) -> httpx.Response:
        """POST one batch (If-Match: the root's current ETag unless given; X-Converge-Epoch if ``epoch``
        is given); the response, whatever it is."""
        if if_match is None:
            if_match = str(self.get(f"/v1/roots/{root}")["etag"])
        headers = self.headers() | {"If-Match": if_match}
        if writer is not None:
            headers["X-Converge-Writer"] = writer
        if epoch is not None:
            headers["X-Converge-Epoch"] = str(epoch)
        return httpx.post(f"{self.url}/v1/roots/{root}/batch", json={"operations": list(operations)},
                          headers=headers, timeout=10.0, verify=self._verify)

    def objects(self, root: str, *, page: int = 1000) -> list[dict[str, Any]]:
        """Every object of ``root`` (with its digest), following the pages of GET .../objects."""
        return self._pages(f"/v1/roots/{root}/objects", "objects", {"limit": page})

    def audit(self, *, after: int = 0) -> list[dict[str, Any]]:
        """Every audit entry with ``seq > after``, oldest first, following the pages of GET /v1/audit."""
        return self._pages("/v1/audit", "entries", {"limit": 1000, "after": after})

    def _pages(self, path: str, field: str, params: dict[str, str | int]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            answer = self.get(path, params=params)
            found.extend(answer[field])
            if answer["next"] is None:
                return found
            params["after"] = answer["next"]

    def stale_writes(self) -> dict[str, list[StaleWrite]]:
        """:func:`stale_writes` over the whole audit log: empty unless a stale lease's write was applied."""
        return stale_writes(self.audit())

    def get(self, path: str, params: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        """GET ``path`` with the API token; raise on an error status."""
        response = httpx.get(self.url + path, params=params, headers=self.headers(), timeout=10.0,
                             verify=self._verify)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
