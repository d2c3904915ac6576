"""Shared by the modules that drive the real Neutron API: their pytest marks."""

from collections.abc import Iterator

import pytest

from converge.testing.fabric import FabricProcess

MARKS = [
    pytest.mark.neutron,
    # openstacksdk 4.x warns about its own internals on every call.
    pytest.mark.filterwarnings("ignore:The _compute_attributes method is deprecated"),
    pytest.mark.filterwarnings("ignore:The 'service_type' parameter is unnecesary"),
    pytest.mark.filterwarnings("ignore:Support for InfluxDB requires"),
]


@pytest.fixture(scope="module", name="fabric")
def module_fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FabricProcess]:
    """One controller per module, with faults, ports going up 0.2 s after creation."""
    with FabricProcess(tmp_path_factory.mktemp("fabric"), faults=True, port_up_delay=0.2) as process:
        yield process
