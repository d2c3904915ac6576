"""Shipped test support (tests, benchmarks, demo): a fake clock, an in-memory backend (``memory``), and
launchers for MariaDB, the fabric controller, Neutron and OVN. Under import contracts (pyproject.toml): it
imports neither ``converge.neutron`` nor ``converge.cli``, and nothing shipped imports it but the demo
commands' launchers."""
