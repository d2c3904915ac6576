"""The OVN backend: the engine's Backend over OVN's Northbound DB (docs/design/ovn.md, docs/ovn.md)."""

from converge.backends.ovn.backend import OvnBackend

__all__ = ["OvnBackend"]
