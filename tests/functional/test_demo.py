"""The README's first command, end to end: ``scripts/demo`` runs setup, then ``converge demo`` — Neutron's
API with Converge on OVN (``converge.cli.ovn_demo``), proven with packets — and exits 0 only if every check
held; everything it started is gone afterwards."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from converge.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ("ports ACTIVE", "ping on one network", "ping across the router", "ping to a floating IP", "SNAT",
          "every resource synced", "NB rows", "out-of-band deletion repaired", "everything stopped")
DEADLINE = 240.0  # below pytest's timeout, so that the demo is stopped by SIGTERM, not left running
DAEMONS = r"(ovsdb-server-nb|ovsdb-server-sb|ovn-northd|ovsdb-server|ovs-vswitchd|ovn-controller|MariaDB pid) (\d+)"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.neutron
@pytest.mark.ovn
def test_scripts_demo_proves_every_check_on_ovn_and_stops_everything(tmp_path: Path) -> None:
    with subprocess.Popen([str(ROOT / "scripts" / "demo"), "--workdir", str(tmp_path / "demo")], cwd=ROOT,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as demo:
        try:
            stdout, stderr = demo.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            demo.terminate()  # SIGTERM: the demo stops what it started (SIGKILL would leave it running)
            stdout, stderr = demo.communicate(timeout=60)
            pytest.fail(f"scripts/demo still running after {DEADLINE:.0f} s\n{stdout}\n{stderr}")
    out = " ".join(stdout.split())  # long lines wrap: compare on single spaces
    assert demo.returncode == 0, f"{stdout}\n{stderr}"
    for check in CHECKS:
        assert f"✓ {check} " in out, f"no passed check {check!r} in:\n{stdout}"
    assert "✗" not in out
    assert f"all {len(CHECKS)} checks held" in out
    assert "backend = ovn" in out and "lsp-del web-2" in out
    started = {int(pid) for _, pid in re.findall(DAEMONS, out)}
    assert len(started) == 7, out  # six OVN daemons and MariaDB, as the demo printed them
    assert not [pid for pid in started if alive(pid)]


def test_the_embedded_demo_refuses_ovn(tmp_path: Path) -> None:
    assert main(["demo", "--embedded", "--backend", "ovn", "--workdir", str(tmp_path)]) == 2
