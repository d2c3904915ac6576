"""The release notes in ``releasenotes/notes/`` are reno's: ``reno lint`` passes without a warning, and each note is
a YAML mapping of reno's sections (the prelude one text, every other section a list of texts) whose RST literals
are closed.

``reno lint`` reads the repository through dulwich (it needs a git checkout with a commit, as a fresh clone is);
the structural checks below it need only the files, so they also hold the notes of a source tree without git.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from reno import config as reno_config

ROOT = Path(__file__).resolve().parents[2]
NOTES = sorted((ROOT / "releasenotes" / "notes").glob("*.yaml"))
RENO = reno_config.Config(str(ROOT))  # this repository's reno settings: its defaults, no config.yaml
SECTIONS = {section.name for section in RENO.sections}  # features, issues, upgrade, security, fixes, ...
PRELUDE = RENO.prelude_section_name
# What reno says about a note it does not like; it exits 0 for some of them.
COMPLAINTS = ("not a recognized section", "unrecognized section", "does not parse", "parses as",
              "UID collision", "does not appear to be structured")


def test_there_are_notes():
    assert len(NOTES) >= 10


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="reno reads the notes through git")
def test_reno_lint_passes_without_a_warning():
    done = subprocess.run([sys.executable, "-c", "import sys; from reno.main import main; sys.exit(main(['lint']))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert not [line for line in said.splitlines() if any(c in line for c in COMPLAINTS)], said


@pytest.mark.parametrize("note", NOTES, ids=[n.name for n in NOTES])
def test_note_is_made_of_renos_sections(note: Path):
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*-[0-9a-f]{16}\.yaml", note.name), (
        f"{note.name}: name it as 'reno new SLUG' does (SLUG-<16 hex digits>.yaml)")
    content = yaml.safe_load(note.read_text(encoding="utf-8"))
    assert isinstance(content, dict) and content, f"{note.name}: a note is a mapping of sections"
    assert set(content) <= SECTIONS | {PRELUDE}, f"{note.name}: sections {set(content) - SECTIONS - {PRELUDE}} " \
                                                 f"are not reno's ({sorted(SECTIONS)} and {PRELUDE})"
    texts = []
    for section, body in content.items():
        if section == PRELUDE:
            assert isinstance(body, str), f"{note.name}: the prelude is one text"
            texts.append(body)
        else:
            assert isinstance(body, list) and body, f"{note.name}: {section} is a list of texts"
            assert all(isinstance(item, str) and item.strip() for item in body), f"{note.name}: {section}"
            texts += body
    for text in texts:
        assert text.count("``") % 2 == 0, f"{note.name}: an RST literal is not closed in: {text[:80]}…"


def test_one_prelude_for_the_release():
    """reno joins every note's prelude into one: this release's prelude is said once."""
    preludes = [n.name for n in NOTES if PRELUDE in (yaml.safe_load(n.read_text(encoding="utf-8")) or {})]
    assert len(preludes) == 1, preludes


def test_unique_ids():
    ids = [n.stem.rsplit("-", 1)[1] for n in NOTES]
    assert len(ids) == len(set(ids))
