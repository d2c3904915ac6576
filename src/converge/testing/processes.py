"""Child processes for the test harnesses: a daemon run in the foreground, and a command run to completion.

Why: a launcher has to find its server ready, say why when it is not, and stop it by its PID alone — never
by name: other test runs share the machine. :class:`Daemon` runs a program in a session of its own with
its output in a log file, polls a readiness check while watching for an early exit, and stops it with
``stop_process`` (SIGTERM, then SIGKILL to its session); :func:`run` runs a command and raises
:class:`CommandError` with its stderr. Used by ``converge.testing.ovn``. ``stop_process`` and ``tail`` live
in ``converge.testing.neutron``, their first user, and belong here.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from converge.testing.neutron import stop_process, tail

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0


class StartError(RuntimeError):
    """A daemon exited, or was not ready in time; the message ends with its log tail."""


class CommandError(RuntimeError):
    """A command exited non-zero; the message holds its stderr."""


def program(name: str) -> str:
    """The path of a program; daemons such as ``ovsdb-server`` are in /usr/sbin, off some PATHs."""
    for found in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if found and os.access(found, os.X_OK):
            return found
    raise StartError(f"{name} not found: scripts/setup installs the Debian packages")


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run a command to completion; its stdout, stripped. :class:`CommandError` if it fails."""
    done = subprocess.run(list(argv), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise CommandError(f"{shlex.join(argv)} exited with {done.returncode}: {done.stderr.strip()}")
    return done.stdout.strip()


def accepts(path: Path) -> bool:
    """Whether a server listens on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


class Daemon:
    """One server in the foreground, its stdout and stderr appended to ``log``; started and stopped by PID.

    ``argv`` may start with a command that execs the server (``ip netns exec NS``): the PID is still its."""

    def __init__(self, name: str, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = None if env is None else dict(env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int | None:
        """Its PID while it runs."""
        process = self.process
        return process.pid if process is not None and process.poll() is None else None

    def running(self) -> bool:
        return self.pid is not None

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
        """Poll ``ready`` until true; :class:`StartError` if the daemon exits or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise StartError(f"{self.name} exited with {code} before {what}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise StartError(f"{what}: not within {timeout:.0f} s\n{self.tail()}")
            time.sleep(0.02)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code, or None if it was not running. Idempotent."""
        process, self.process = self.process, None
        return stop_process(process, timeout)

    def tail(self, lines: int = 30) -> str:
        return f"--- {self.log} ---\n{tail(self.log, lines)}"


@contextlib.contextmanager
def blamed_on(daemon: Daemon | None) -> Iterator[None]:
    """A command that fails inside becomes a :class:`StartError` ending with ``daemon``'s log tail."""
    try:
        yield
    except (CommandError, subprocess.TimeoutExpired) as error:
        raise StartError(f"{error}\n{daemon.tail() if daemon else ''}") from error


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so that the ``with`` blocks that started processes
    stop them; the previous handler comes back on the way out."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
