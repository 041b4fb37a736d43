"""The command line: durations, one-line errors, and the README documents every option."""

from __future__ import annotations

import argparse
import pathlib
import re

import pytest

from msewatch import cli
from msewatch.commands import arguments
from msewatch.schemas import queries
from tests.cli_cases import IDS, USER_ERRORS, error_lines

ROOT = pathlib.Path(__file__).parent.parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("1h", 3600),
        ("7d", 604800),
        ("90s", 90),
        ("500ms", 0.5),
        ("2w", 1209600),
        ("45", 45),
        ("1.5h", 5400),
    ],
)
def test_durations(text, seconds):
    assert arguments.duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1y", "-1h", "one hour"])
def test_bad_durations_are_rejected(text):
    with pytest.raises(argparse.ArgumentTypeError, match="e.g. 30m, 1h, 7d"):
        arguments.duration_seconds(text)


@pytest.mark.parametrize(("args", "message"), USER_ERRORS, ids=IDS)
def test_user_errors_print_one_line_and_exit_2(args, message, tmp_path, monkeypatch, capsys):
    """In-process; ``tests/e2e/test_cli_entry_point.py`` runs the same in a subprocess."""
    monkeypatch.delenv("MSEWATCH_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)  # a run that got through would write here
    assert cli.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("msewatch: error:") and message in lines[0]
    assert list(tmp_path.iterdir()) == []


# --- the README documents every command, option and named query ----------------------


def _mentions(text: str, word: str) -> bool:
    """``word`` appears in ``text`` as a whole option or value (``--out`` is not ``--output``)."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def _section(text: str, heading: str) -> str:
    """The README section under ``heading`` (up to the next heading of its level or above)."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(f"\n{heading}\n")
    end = re.search(rf"\n#{{1,{level}}} ", text[start + 1 :])
    return text[start : start + 1 + end.start()] if end else text[start:]


def _commands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> dict[str, argparse.ArgumentParser]:
    """Every command and subcommand by its name after ``msewatch`` (``run``, ``slo check``,
    ``local flink``)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                found[prefix + name] = command
                found |= _commands(command, f"{prefix}{name} ")
    return found


def undocumented(parser: argparse.ArgumentParser, readme: str) -> list[str]:
    """What the README does not mention: each ``msewatch`` command and subcommand, each of
    their options and option values, each option of ``msewatch run`` in that command's own
    section, and each named query as ``msewatch query OUTPUT NAME``."""
    missing = []
    run_section = _section(readme, "### `msewatch run`")
    for name, command in _commands(parser).items():
        if not re.search(rf"msewatch {name}\b", readme):
            missing.append(f"msewatch {name}")
        for action in command._actions:
            for opt in (o for o in action.option_strings if o.startswith("--") and o != "--help"):
                if not _mentions(readme, opt):
                    missing.append(f"msewatch {name} {opt}")
                elif name == "run" and not _mentions(run_section, opt):
                    missing.append(f"msewatch run {opt} (in the `msewatch run` section)")
                missing += [
                    f"msewatch {name} {opt} {choice}"
                    for choice in action.choices or ()
                    if not _mentions(readme, str(choice))
                ]
    for query in queries.QUERY_NAMES:
        if not re.search(rf"msewatch query \S+ {re.escape(query)}\b", readme):
            missing.append(f"msewatch query OUTPUT {query}")
    return missing


def test_readme_documents_every_command_and_option():
    assert undocumented(cli.build_parser(), README) == []


def _out_of_run_section(readme: str, opt: str) -> str:
    """The README with ``opt`` gone from the ``msewatch run`` section, kept elsewhere."""
    section = _section(readme, "### `msewatch run`")
    return readme.replace(section, section.replace(opt, "...")) + f"\n{opt}\n"


@pytest.mark.parametrize(
    ("edit", "reported"),
    [
        (lambda r: r.replace("--label-ttl", "..."), "msewatch run --label-ttl"),
        (
            lambda r: _out_of_run_section(r, "--quiet"),
            "msewatch run --quiet (in the `msewatch run` section)",
        ),
        (lambda r: r.replace("msewatch report", "..."), "msewatch report"),
        (lambda r: r.replace("--no-malformed", "..."), "msewatch generate --no-malformed"),
        (lambda r: r.replace("query out coverage", "..."), "msewatch query OUTPUT coverage"),
        (lambda r: r.replace("--trend-windows", "..."), "msewatch slo status --trend-windows"),
        (lambda r: r.replace("1.20.3", "..."), "msewatch local flink --flink-version 1.20.3"),
    ],
    ids=[
        "option",
        "run option elsewhere",
        "command",
        "generate option",
        "named query",
        "subcommand option",
        "subcommand option value",
    ],
)
def test_the_readme_check_reports_what_is_missing(edit, reported):
    edited = edit(README)
    assert edited != README
    assert reported in undocumented(cli.build_parser(), edited)


def test_readme_first_screen_has_the_two_commands():
    first_screen = "\n".join(README.splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
