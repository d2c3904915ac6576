"""Shared by the modules that drive the real Neutron API: their pytest marks."""

import pytest

MARKS = [
    pytest.mark.neutron,
    # openstacksdk 4.x warns about its own internals on every call.
    pytest.mark.filterwarnings("ignore:The _compute_attributes method is deprecated"),
    pytest.mark.filterwarnings("ignore:The 'service_type' parameter is unnecesary"),
    pytest.mark.filterwarnings("ignore:Support for InfluxDB requires"),
]
