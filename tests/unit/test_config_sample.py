"""etc/converge.conf.sample is what oslo-config-generator makes of the [converge] options today."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_sample_configuration_is_up_to_date(tmp_path):
    out = tmp_path / "converge.conf.sample"
    generator = Path(sys.executable).parent / "oslo-config-generator"
    subprocess.run([str(generator), "--namespace", "converge", "--wrap-width", "79", "--output-file", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    assert out.read_text() == (ROOT / "etc" / "converge.conf.sample").read_text(), \
        "regenerate: oslo-config-generator --config-file etc/oslo-config-generator/converge.conf"
