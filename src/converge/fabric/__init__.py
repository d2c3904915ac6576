"""The reference fabric controller: an SDN controller that speaks docs/protocol.md over HTTP/JSON.

Why it exists: the sync engine needs a real controller to be developed, tested and benchmarked against,
and vendors need a running example of the protocol. It keeps objects in SQLite (WAL), serves root
fingerprints and bucket sums maintained incrementally, emits port status events over SSE, and can inject
the faults the engine must survive (latency, errors, hangs, refused connections, lost or corrupted state).

Who calls it: ``python -m converge.fabric`` (see :mod:`converge.fabric.serve`), started by operators, by
``converge.testing.fabric.FabricProcess`` in functional tests and benchmarks. It imports only
``converge.core`` from the project, so it can be shipped and read on its own.

Modules, bottom up: ``errors`` (the error codes), ``operations`` (batch bodies into values), ``validate``
(per-kind checks), ``index`` (in-memory objects, references and sums with an undo log), ``schema``,
``audit`` and ``fence`` (SQLite: the write log, lease-epoch fences), ``state`` (the store and its
batches), ``queries`` (reads), ``drift`` (injected state loss), ``events`` and ``ports`` (SSE and port
status), ``httpio``, ``api``, ``faults``, ``metrics`` and ``app`` (HTTP), ``serve`` (the process).
"""
