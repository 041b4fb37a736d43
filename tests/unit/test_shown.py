"""Values shown in error messages (``transforms/shown.py``): short, one line, bounded."""

from __future__ import annotations

import datetime

import pytest

from msewatch.transforms.shown import escape, shown


@pytest.mark.parametrize(
    "value, text",
    [  # short values are their repr, as the messages always wrote them
        ("99%", "'99%'"),
        (True, "True"),
        (2.5, "2.5"),
        (float("inf"), "inf"),
        (None, "None"),
        ([1, "a"], "[1, 'a']"),
        ({"model_version": "v1"}, "{'model_version': 'v1'}"),
        ([], "[]"),
        (datetime.date(2026, 11, 2), "datetime.date(2026, 11, 2)"),
        ("ab\ncd\x1b", "'ab\\ncd\\x1b'"),  # one line, no escape sequence
    ],
)
def test_a_short_value_is_its_repr(value, text):
    assert shown(value) == text


def test_a_long_text_is_cut_and_says_how_long_it_is():
    assert shown("x" * 1000) == "'" + "x" * 60 + "'... (a text of 1000 characters)"


@pytest.mark.parametrize(
    "value, digits",
    [(10**400, 401), (10**400 - 1, 400), (-(10**5000), 5001), (2**1000, 302)],
    ids=["10^400", "10^400-1", "-10^5000", "2^1000"],
)
def test_a_huge_integer_is_described_by_its_digits(value, digits):
    # 2^1000 = 1.07 x 10^301: 302 digits; Python refuses str() beyond 4,300 digits
    assert shown(value) == f"an integer of {digits} digits"


def test_a_shared_structure_is_walked_within_the_budget():
    bomb = ["lol"] * 9
    for _ in range(40):  # 9^41 strings if expanded
        bomb = [bomb] * 9
    text = shown(bomb)
    assert text.startswith("[[[[...], [...],") and text.endswith("(a list of 9 items)")
    assert len(text) < 120


def test_escape_writes_control_characters_and_cuts():
    assert escape("a\nb\t\x1b[2J\u202e") == "a\\nb\\t\\x1b[2J\\u202e"
    assert escape("abcdef", 3) == "abc..."
    assert escape(5) == 5
