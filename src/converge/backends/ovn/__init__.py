"""The OVN backend: the engine's Backend over OVN's Northbound DB (docs/design/ovn.md, docs/ovn.md).

``ovs.poller`` imports Eventlet when it is installed (Neutron brings it), and Eventlet prints a
deprecation banner on import: an operator's ``converge status`` must not show it, so the first import of
the OVS library happens here with that one warning silenced.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import ovs.poller  # noqa: F401 - imported for its side effect, once, quietly

from converge.backends.ovn.backend import OvnBackend  # noqa: E402

__all__ = ["OvnBackend"]
