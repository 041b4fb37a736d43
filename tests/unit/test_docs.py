"""The README and docs/ stay true to the tree: links resolve, named files exist.

(The README's coverage of every command and option is checked in ``test_cli.py``.)
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parent.parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP_FOLDERS = ("msewatch", "schemas", "transforms", "pipelines", "runners", "tests", "benchmarks")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_CODE_PATH = re.compile(rf"`((?:{'|'.join(TOP_FOLDERS)})/[\w./-]*)`")


def anchors(page: pathlib.Path) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, '-' for ' ')."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(page: pathlib.Path) -> list[str]:
    """Relative links of ``page`` whose file or heading does not exist."""
    broken = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and anchor not in anchors(linked)):
            broken.append(target)
    return broken


def missing_paths(page: pathlib.Path) -> list[str]:
    """Repository paths named in backquotes (``transforms/join/kernel.py``) that do not
    exist; globs and placeholders (``*``, ``{...}``, ``$1``) are skipped."""
    names = _CODE_PATH.findall(page.read_text(encoding="utf-8"))
    return [n for n in names if not re.search(r"[*{}$]", n) and not (ROOT / n).exists()]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_files_exist(page):
    assert missing_paths(page) == []


def unlinked_pages(readme: str, names: list[str]) -> list[str]:
    """The docs pages (by file name) that ``readme`` does not link as ``](docs/NAME)``."""
    return [name for name in sorted(names) if f"](docs/{name})" not in readme]


def test_the_readme_links_the_docs_pages():
    """Every page of docs/ is linked from the README (a new page is found from there);
    the pages that the README's sections hand their details to exist."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = [p.name for p in PAGES[1:]]
    assert {"architecture.md", "semantics.md", "slo.md", "performance.md", "runners.md"} <= set(
        names
    )
    assert unlinked_pages(readme, names) == []
    assert unlinked_pages(readme.replace("](docs/runners.md)", "]"), names) == ["runners.md"]


def test_the_readme_stays_short():
    """A newcomer reads it in one sitting: details go to docs/ (issue 24)."""
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) < 600


def test_the_checks_report_a_broken_link_and_a_missing_file(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n[ok](#top) [gone](missing.md) [no heading](#nowhere)\n"
        "`transforms/join/kernel.py` `transforms/join.py` `schemas/queries/*/x.sql`\n"
    )
    assert broken_links(page) == ["missing.md", "#nowhere"]
    assert missing_paths(page) == ["transforms/join.py"]
