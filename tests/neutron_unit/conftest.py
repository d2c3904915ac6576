"""Neutron unit tests that cannot pass in this setup whatever Converge does, skipped with their reason.

Each entry was run with Neutron's own drivers and L3 plugin (``logger,test`` and ``router`` on ML2) and
fails there the same way; see docs/design/neutron-unit-tests.md.
"""

from __future__ import annotations

import pytest

EXCLUDED = {
    "test_l3_with_converge.py::TestL3NatWithConverge::test_router_add_interface_by_port_fails_nested": (
        "Neutron's test calls the core plugin's update_port inside a transaction; ML2's update_port refuses "
        "to run in one (RuntimeError 'cannot be called within a transaction'), the test plugin it was "
        "written for does not"),
    "test_l3_with_converge.py::TestL3AgentDbWithConverge::test_floatingip_delete_after_event": (
        "the production L3 plugin's floating IP carries qos_network_policy_id (its FloatingQoSDbMixin), a key "
        "Neutron's test, written for its test plugin, does not expect in the AFTER_DELETE payload"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = EXCLUDED.get(item.nodeid.rpartition("neutron_unit/")[2])
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"excluded: {reason}"))
