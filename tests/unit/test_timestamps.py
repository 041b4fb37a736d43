"""Record times from text (msewatch.transforms.parse.timestamps): the fixed-width fast path.

``time_from_text`` reads the fixed-width RFC 3339 forms (20, 24, 25 and 29 characters)
from the string bytes and everything else through the regexes. Two references: the
regex-only path ``_time_from_text_regex`` (every input, every row identical), and
Python's ``datetime.fromisoformat`` for well-formed fixed-width times (its ms by
``tests.parse_examples.utc_ms``; valid when datetime accepts it and, a rule Python does
not check, the offset minute is at most 59).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msewatch.transforms.parse.timestamps import (
    _fixed_width_ms,
    _time_from_text_regex,
    time_from_text,
)
from tests.parse_examples import utc_ms

_PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def _fixed(draw, first_year: int = 0) -> tuple[str, int]:
    """A fixed-width RFC 3339 time with fields a little past their ranges (month 13,
    day 32, hour 24, second 60, offset 24:60) and its offset minute."""
    y, mo = draw(st.integers(first_year, 9999)), draw(st.integers(0, 13))
    d, sep = draw(st.integers(0, 32)), draw(st.sampled_from("Tt "))
    h, mi, s = draw(st.integers(0, 24)), draw(st.integers(0, 60)), draw(st.integers(0, 60))
    text = f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}"
    if draw(st.booleans()):
        text += f".{draw(st.integers(0, 999)):03d}"
    om = 0
    if draw(st.booleans()):
        text += draw(st.sampled_from("Zz"))
    else:
        oh, om = draw(st.integers(0, 24)), draw(st.integers(0, 60))
        text += f"{draw(st.sampled_from('+-'))}{oh:02d}:{om:02d}"
    return text, om


def _mutated(draw_text: st.SearchStrategy) -> st.SearchStrategy:
    """A fixed-width time with one character replaced (letters in digit places, wrong
    separators, a "." or a "Z" where it does not belong)."""

    @st.composite
    def build(draw) -> str:
        text = draw(draw_text)[0]
        at = draw(
            st.one_of(
                st.sampled_from([4, 7, 10, 13, 16, 19, len(text) - 1]),
                st.integers(0, len(text) - 1),
            )
        )
        return text[:at] + draw(st.sampled_from("axXZ:.,-+T/ 9é\x00")) + text[at + 1 :]

    return build()


_texts = st.lists(
    st.one_of(
        _fixed().map(lambda t: t[0]),
        _mutated(_fixed()),
        st.sampled_from(
            [
                "2024-02-29T12:00:00Z",  # leap year
                "2023-02-29T12:00:00Z",  # not a leap year
                "1900-02-29T00:00:00Z",  # century, not a leap year
                "2000-02-29T00:00:00.999-23:59",  # 400 years, a leap year
                "2024-04-31T00:00:00Z",  # 30 days in April
                "2024-01-01T00:00:00.1234Z",  # 25 characters, not an offset
                "2024-01-01T00:00:00.12345678Z",  # 29 characters, not an offset
                "2024-01-01T00:00:00.5Z",
                "2024-01-01_00:00:00Z",
                "2024/01/01T00:00:00Z",
                "2024-01-01T00-00-00Z",
                "2024-01-01T00:00:00,123Z",
                "2024-01-01T00:00:00+0100Z",
                "2024-01-01T00:00:00.123+01-00",
                "2024-01-01T00:00:00",
                "2024-01-01T00:00:00Z ",
                "1704067200000",
                "-1704067200000",
                "1.5e12",
                "12345678901234567890",
                "",
                "nan",
            ]
        ),
        st.integers(-(10**16), 10**16).map(str),
        st.text(max_size=30),
        st.none(),
    ),
    max_size=30,
)


@_PROPERTY
@given(_texts, st.booleans())
def test_property_time_from_text_equals_the_regex_path(texts, large):
    kind = pa.large_string() if large else pa.string()
    whole = pa.array([None, "2024-01-01T00:00:00Z", *texts], kind)
    for arr in (whole, whole.slice(1), whole.slice(2), whole.slice(1, len(texts))):
        ms, ok = time_from_text(arr)
        ref_ms, ref_ok = _time_from_text_regex(arr)
        np.testing.assert_array_equal(ok, ref_ok)
        np.testing.assert_array_equal(ms, ref_ms)


def _datetime_reference(text: str, offset_minute: int) -> tuple[int, bool]:
    try:
        return utc_ms(text), offset_minute <= 59
    except ValueError:
        return 0, False


@_PROPERTY
@given(st.lists(_fixed(first_year=1), min_size=1, max_size=30))  # datetime: years 1-9999
def test_property_fixed_width_times_agree_with_datetime(times):
    arr = pa.array(["x", *(text for text, _ in times)]).slice(1)
    fast, _, _ = _fixed_width_ms(arr)
    assert fast.all()  # every one is read by the fast path, none by the regexes
    ms, ok = time_from_text(arr)
    for (text, offset_minute), got_ms, got_ok in zip(times, ms, ok, strict=True):
        ref_ms, ref_ok = _datetime_reference(text, offset_minute)
        assert got_ok == ref_ok, text
        if ref_ok:
            assert got_ms == ref_ms, text


def test_fixed_width_examples_hand_derived():
    # 2024-01-01T00:00:00Z is 19723 days after 1970-01-01 (54 years, 13 of them leap:
    # 54 * 365 + 13 = 19723) -> 19723 * 86_400_000 = 1_704_067_200_000 ms.
    jan1 = 1_704_067_200_000
    texts = [
        "2024-01-01T00:00:00Z",
        "2024-01-01t00:00:00.123z",  # + 123 ms
        "2024-01-01 00:00:00+01:30",  # 01:30 ahead of UTC: - 5_400_000 ms
        "2024-01-01T00:00:00.001-00:01",  # 1 ms, 1 minute behind UTC: + 60_001 ms
        "2024-01-01T00:00:00.001-00:60",  # offset minute 60
        "2024-01-01T24:00:00Z",  # hour 24
        "2024-01-01T00:00:60Z",  # leap second
        "2024-01-01x00:00:00Z",  # wrong separator: left to the regexes, rejected
        None,
    ]
    arr = pa.array(texts)
    fast, _, _ = _fixed_width_ms(arr)
    assert fast.tolist() == [True] * 7 + [False, False]
    ms, ok = time_from_text(arr)
    assert ok.tolist() == [True] * 4 + [False] * 5
    assert ms[:4].tolist() == [jan1, jan1 + 123, jan1 - 5_400_000, jan1 + 60_001]
    assert utc_ms("2024-01-01T00:00:00Z") == jan1  # the hand derivation, by datetime


def test_every_one_character_change_of_each_form_equals_the_regex_path():
    # Exhaustive over positions: each fixed-width form with each character replaced by
    # each of a set of digits, separators, letters and non-ASCII (2,000 strings).
    forms = [
        "2024-02-29T23:59:59Z",
        "2024-02-29t23:59:59.999z",
        "2024-02-29 23:59:59+05:30",
        "2024-02-29T23:59:59.999-05:30",
    ]
    chars = "09aTtxZz :.,-+/_é\x00"
    texts = [f[:at] + c + f[at + 1 :] for f in forms for at in range(len(f)) for c in chars]
    arr = pa.array(["x", *texts]).slice(1)
    ms, ok = time_from_text(arr)
    ref_ms, ref_ok = _time_from_text_regex(arr)
    np.testing.assert_array_equal(ok, ref_ok)
    np.testing.assert_array_equal(ms, ref_ms)
    assert 0 < ok.sum() < len(texts)
