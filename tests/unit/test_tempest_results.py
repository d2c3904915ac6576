"""How a Tempest run's outcomes are read (``converge.testing.tempest.parse_csv``) and compared with the no-op
run's (``converge.testing.third_party_ci.new_failures``): ``subunit2csv`` names outcomes as unittest does
(``failure``, ``error``…), and a class whose set-up failed is one row of its own."""

from __future__ import annotations

from converge.testing.tempest import Results, parse_csv
from converge.testing.third_party_ci import new_failures

TABLE = """test,status,start_time,stop_time
"tempest.api.network.test_ports.PortsTestJSON.test_show_port[id-c9a685bd,smoke]",failure,,
tempest.api.network.test_ports.PortsTestJSON.test_show_port_fields[id-45fcdaf2],success,,
tempest.api.network.test_networks.NetworksTest.test_show_network[id-2bf13842],error,,
setUpClass (tempest.api.network.admin.test_metering_extensions.MeteringTestJSON),skip,,
setUpClass (tempest.api.network.test_routers.RoutersTest),failure,,
tempest.api.network.test_tags.TagsExtTest.test_update_and_delete_all_tags[id-c6231efa],expectedfailure,,
tempest.api.network.test_tags.TagsExtTest.test_create_check_list_and_delete_tags[id-ee76bfaf],unexpectedsuccess,,
"""


def results(failed: tuple[str, ...]) -> Results:
    return Results(passed=(), failed=failed, skipped=(), seconds=1.0, exit_code=1)


def test_outcomes_by_unittest_name_without_attributes() -> None:
    read = parse_csv(TABLE, seconds=12.5, exit_code=1)
    assert read.passed == ("tempest.api.network.test_ports.PortsTestJSON.test_show_port_fields",
                           "tempest.api.network.test_tags.TagsExtTest.test_update_and_delete_all_tags")
    assert read.failed == ("setUpClass (tempest.api.network.test_routers.RoutersTest)",
                           "tempest.api.network.test_networks.NetworksTest.test_show_network",
                           "tempest.api.network.test_ports.PortsTestJSON.test_show_port",
                           "tempest.api.network.test_tags.TagsExtTest.test_create_check_list_and_delete_tags")
    assert read.skipped == ("setUpClass (tempest.api.network.admin.test_metering_extensions.MeteringTestJSON)",)
    assert read.summary() == "2 passed, 4 failed, 1 skipped"
    assert (read.seconds, read.exit_code) == (12.5, 1)


def test_an_empty_table_is_no_test() -> None:
    read = parse_csv("test,status,start_time,stop_time\n", seconds=0.0, exit_code=0)
    assert (read.passed, read.failed, read.skipped) == ((), (), ())


def test_only_failures_the_noop_run_does_not_have_count() -> None:
    converge = results(("a.test_env", "b.test_driver", "c.test_driver"))
    noop = results(("a.test_env", "d.test_noop_only"))
    assert new_failures(converge, noop) == ["b.test_driver", "c.test_driver"]
    assert new_failures(results(("a.test_env",)), noop) == []
