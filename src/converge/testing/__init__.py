"""Shipped test support: fake clock, and launchers for MariaDB and the fabric controller (tests, benchmarks, demo)."""
