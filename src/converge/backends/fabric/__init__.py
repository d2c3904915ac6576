"""The fabric protocol backend (docs/protocol.md) over HTTP with httpx."""

from converge.backends.fabric.client import FabricClient

__all__ = ["FabricClient"]
