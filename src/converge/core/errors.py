"""The project's error tree. Foreign errors (httpx, SQLAlchemy, the DB driver) are translated into it
once, at the edge that sees them: ``backends/fabric/client.py`` and ``store/db.py``.

::

    ConvergeError
    ├── TemporaryError(delay)           retry the same work later; the loop owns the backoff
    │   ├── ControllerUnavailable       refused, reset, timed out, 5xx, circuit open
    │   ├── DatabaseUnavailable         the database refused the connection or the operation
    │   └── RaceLost                    deadlock / Galera certification failure / lost guarded update
    ├── PermanentError                  retrying the same input cannot help
    │   ├── ObjectRejected(index)       the controller refused one operation of a batch (4xx naming it)
    │   ├── ProtocolViolation           the controller answered something the protocol does not allow
    │   └── ConfigurationError          bad token, bad URL, bad database URL
    ├── PreconditionFailed(etag)        412: the root's ETag is not what the writer believed
    │   └── Fenced(epoch)               the root's fence names a newer lease epoch than the writer's
    └── LeaseLost                       this worker no longer holds the root; stop writing at once
"""

from __future__ import annotations


class ConvergeError(Exception):
    """Base of every error Converge raises on purpose."""


class TemporaryError(ConvergeError):
    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class ControllerUnavailable(TemporaryError):
    """The controller could not be reached or answered 5xx; says which URL."""


class DatabaseUnavailable(TemporaryError):
    """The database could not be reached or refused the operation (other than a lost race)."""


class RaceLost(TemporaryError):
    """Another writer got there first (deadlock, certification failure, guarded UPDATE hit no row)."""


class PermanentError(ConvergeError):
    """Retrying the same input cannot succeed."""


class ObjectRejected(PermanentError):
    """The controller rejected operation ``index`` of a batch; nothing of the batch was applied.

    ``parent`` is the (kind, id) the controller said was missing (409 missing_parent), ``children`` the
    (root, kind, id) it said still name a deleted object (409 has_children), when it said so.
    """

    def __init__(self, message: str, *, index: int | None, status: int,
                 parent: tuple[str, str] | None = None, children: tuple[tuple[str, str, str], ...] = ()) -> None:
        super().__init__(message)
        self.index = index
        self.status = status
        self.parent = parent
        self.children = children


class ProtocolViolation(PermanentError):
    """The controller's answer does not follow docs/protocol.md."""


class ConfigurationError(PermanentError):
    """The configuration cannot work: wrong token, malformed URL, unreachable database URL."""


class Unauthorized(ConfigurationError):
    """The controller refused the configured credentials (401): nothing will work until an operator fixes
    them, for every root alike."""


class PreconditionFailed(ConvergeError):
    """412: the root's fingerprint differs from the ``If-Match`` the writer sent."""

    def __init__(self, message: str, *, current: int) -> None:
        super().__init__(message)
        self.current = current


class Fenced(PreconditionFailed):
    """The controller's fence for the root names lease epoch ``epoch``, newer than the writer's.

    Either the writer lost its lease (the store proves it: LeaseLost), or the epoch comes from before the
    store's history (a store restored or rebuilt next to a controller that kept its fences): then the
    store's holder moves its epoch past it and writes (engine/reconciler.py)."""

    def __init__(self, message: str, *, current: int, epoch: int) -> None:
        super().__init__(message, current=current)
        self.epoch = epoch


class LeaseLost(ConvergeError):
    """The worker's lease on a root was taken over or expired: it must not write for that root again."""
