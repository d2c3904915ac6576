"""A throwaway MariaDB server for tests and benchmarks: Debian's ``mariadbd`` in a temporary folder.

No systemd, no system-wide state: a private datadir, socket, PID file and log under ``workdir``,
listening on 127.0.0.1 only, stopped by its PID (never by name). ``scripts/setup`` installs the Debian
packages. A server of another shape (a Galera node, ``converge.testing.galera``) overrides the hooks
:meth:`MariaDB.options`, :meth:`MariaDB.initialize`, :meth:`MariaDB.environment` and :meth:`MariaDB.ready`,
and passes ``mariadbd`` arguments to :meth:`MariaDB.start`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
CLIENT = shutil.which("mariadb") or "/usr/bin/mariadb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MariaDB:
    def __init__(self, workdir: Path, *, port: int | None = None, durable: bool = True,
                 buffer_pool: str = "256M", password: str | None = None) -> None:
        self.workdir = Path(workdir).resolve()  # mariadb-install-db needs absolute paths
        self.port = port or free_port()
        self.durable = durable
        self.buffer_pool = buffer_pool
        self.password = password or secrets.token_hex(12)  # the 'converge' user's
        self.process: subprocess.Popen[bytes] | None = None
        self.socket = self.workdir / "mysqld.sock"
        self.datadir = self.workdir / "data"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def url(self, database: str = "converge") -> str:
        return f"mysql+pymysql://converge:{self.password}@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    def options(self) -> list[str]:
        """The ``[mysqld]`` lines of its configuration file."""
        return [
            f"datadir={self.datadir}",
            f"socket={self.socket}",
            f"port={self.port}",
            "bind-address=127.0.0.1",
            f"pid-file={self.workdir / 'mysqld.pid'}",
            f"log-error={self.workdir / 'error.log'}",
            "user=root",
            "skip-name-resolve",
            "skip-log-bin",
            "character-set-server=utf8mb4",
            "collation-server=utf8mb4_general_ci",
            "max_connections=500",
            f"innodb_buffer_pool_size={self.buffer_pool}",
            f"innodb_flush_log_at_trx_commit={1 if self.durable else 2}",
        ]

    @property
    def config_file(self) -> Path:
        return self.workdir / "my.cnf"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text("\n".join(["[mysqld]", *self.options(), ""]))

    def initialize(self) -> None:
        """Create the system tables in a datadir that has none."""
        if not (self.datadir / "mysql").exists():
            subprocess.run([INSTALL_DB, f"--defaults-file={self.config_file}", "--user=root",
                            f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
                            "--skip-test-db"], check=True, capture_output=True)

    def environment(self) -> dict[str, str]:
        """The server's environment."""
        return dict(os.environ)

    def ready(self) -> bool:
        """Whether it answers queries on its socket."""
        return self.socket.exists() and self.sql("SELECT 1", check=False).returncode == 0

    def start(self, timeout: float = 30.0, *, args: Sequence[str] = ()) -> None:
        """Start ``mariadbd`` (with ``args``), wait until :meth:`ready`, and create the ``converge`` user."""
        self.write_config()
        self.initialize()
        log = open(self.workdir / "stdout.log", "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen([MARIADBD, f"--defaults-file={self.config_file}", *args],
                                        env=self.environment(), stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.process.returncode}: {self.log_tail()}")
            if self.ready():
                break
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"mariadbd not ready after {timeout:.0f} s: {self.log_tail()}")
        self.sql(f"CREATE USER IF NOT EXISTS 'converge'@'127.0.0.1' IDENTIFIED BY '{self.password}';"
                 "GRANT ALL ON *.* TO 'converge'@'127.0.0.1';")

    def create_database(self, name: str = "converge") -> str:
        self.sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4;")
        return self.url(name)

    def sql(self, statements: str, *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([CLIENT, f"--socket={self.socket}", "-uroot", "-e", statements],
                              check=check, capture_output=True, timeout=30)

    def log_tail(self) -> str:
        try:
            return (self.workdir / "error.log").read_text()[-2000:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def __enter__(self) -> MariaDB:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
