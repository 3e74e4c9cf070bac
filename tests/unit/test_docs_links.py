"""The README and docs/: every relative link leads somewhere, and the quick start is the one CI runs."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from local.run import cli_help
from local.services import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PARSER = MarkdownIt("commonmark").enable("table")


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _walk(tokens: list[Token]) -> list[Token]:
    return [each for token in tokens for each in (token, *_walk(token.children or []))]


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes for a Markdown text's headings (a repeated one gets -1, -2…)."""
    tokens = PARSER.parse(text)
    made: set[str] = set()
    for opening, inline in itertools.pairwise(tokens):
        if opening.type == "heading_open":
            title = "".join(child.content for child in inline.children or [] if child.type in {"text", "code_inline"})
            base = anchor = slug(title)
            number = 0
            while anchor in made:
                number += 1
                anchor = f"{base}-{number}"
            made.add(anchor)
    return made


def broken_links(document: Path, root: Path) -> list[str]:
    """Each relative link of ``document`` whose file, or whose anchor in that file, does not exist."""
    problems = []
    for token in _walk(PARSER.parse(document.read_text())):
        href = token.attrGet("href") if token.type == "link_open" else None
        if not isinstance(href, str) or urlsplit(href).scheme:
            continue  # http(s), mailto: not checked here (no internet)
        path, _, anchor = href.partition("#")
        target = (document.parent / unquote(path)).resolve() if path else document
        if not target.is_relative_to(root.resolve()) or not target.exists():
            problems.append(f"{document.name}: {href!r}: no file {target}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target.read_text()):
            problems.append(f"{document.name}: {href!r}: no heading with the anchor #{anchor} in {target.name}")
    return problems


def test_the_documents_are_the_readme_and_the_docs_pages() -> None:
    names = {document.relative_to(ROOT).as_posix() for document in DOCUMENTS}
    assert {"README.md", "docs/contract.md", "docs/operating.md", "docs/subscribers.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda document: document.name)
def test_every_relative_link_points_to_an_existing_file_and_heading(document: Path) -> None:
    assert broken_links(document, ROOT) == []


def test_the_link_check_reports_a_missing_file_a_missing_anchor_and_a_way_out(tmp_path: Path) -> None:
    root = tmp_path / "repository"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "other.md").write_text("# Other\n\n## Monitoring: Flower and `celery inspect` on SQS\n")
    (tmp_path / "outside.md").write_text("# Outside the repository\n")
    page = root / "docs" / "page.md"
    page.write_text(
        "# Page\n\n## Two words\n\n"
        "[fine](other.md#monitoring-flower-and-celery-inspect-on-sqs) [here](#two-words) [web](https://example.com)\n"
        "[gone](missing.md) [no anchor](other.md#monitoring) [away](../../outside.md) [self](#nothing)\n"
        "`[in code](missing-too.md)`\n"
    )
    problems = broken_links(page, root)
    expected = [
        "'missing.md': no file",
        "#monitoring in other.md",
        "'../../outside.md': no file",
        "#nothing in page.md",
    ]
    assert len(problems) == len(expected), problems
    for problem, words in zip(problems, expected, strict=True):
        assert words in problem


def test_a_repeated_heading_gets_a_numbered_anchor() -> None:
    assert anchors("# A\n\n## Limits\n\n## Limits\n") == {"a", "limits", "limits-1"}


def test_no_document_mentions_the_shared_folder_outside_the_repository() -> None:
    for document in DOCUMENTS:
        assert "../shared" not in document.read_text(), document.name


def first_code_block(text: str) -> list[str]:
    fence = next(token for token in PARSER.parse(text) if token.type in {"fence", "code_block"})
    return fence.content.strip().splitlines()


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def ci_commands() -> list[list[str]]:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [shlex.split(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_first_code_block_holds_the_two_commands_of_a_fresh_machine() -> None:
    assert first_code_block((ROOT / "README.md").read_text()) == ["make run", "make test"]


def test_the_two_commands_are_the_makefile_targets_and_ci_runs_make_test() -> None:
    assert {"run", "test"} <= makefile_targets()
    assert ["make", "test"] in ci_commands()


def test_the_readme_gives_the_line_make_run_prints_to_use_the_cli(tmp_path: Path) -> None:
    venv_bin = tmp_path / ".venv" / "bin"  # what `make install` makes at the top of the checkout
    venv_bin.mkdir(parents=True)
    (venv_bin / "activate").touch()
    printed = cli_help(venv_bin, tmp_path).splitlines()[0].partition(": ")[2]
    blocks = [token for token in PARSER.parse((ROOT / "README.md").read_text()) if token.type == "fence"]
    assert printed == blocks[1].content.splitlines()[0]
    assert printed.endswith("; . .venv/bin/activate")
