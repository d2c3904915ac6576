"""The operator's guide (``docs/guide/``) stays true to the code it describes: configuration.md names every
``[converge]`` option Converge registers, and every relative link of the guide reaches a file (and a heading,
when it names one) that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from converge.neutron import config

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide"
PAGES = sorted(GUIDE.glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def test_the_guide_has_its_pages():
    assert {p.name for p in PAGES} >= {"install.md", "configuration.md", "day-2.md", "troubleshooting.md"}


def test_configuration_names_every_converge_option():
    text = (GUIDE / "configuration.md").read_text(encoding="utf-8")
    missing = [opt.name for opt in config.OPTS if f"`{opt.name}`" not in text]
    assert not missing, f"docs/guide/configuration.md does not describe [converge] {missing}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists() or (anchor and where.suffix == ".md" and anchor not in anchors(where)):
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"
