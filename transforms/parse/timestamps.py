"""Record times: text (RFC 3339 or epoch milliseconds) to UTC epoch ms.

A time is read as RFC 3339 with an offset (``Z`` or ``±hh:mm``, ``T``/``t``/space
separator, any number of fractional digits, truncated to the millisecond; a valid
calendar date of the years 0000-9999) or as epoch milliseconds (a number or numeric
string; a fraction is floored). A leap second (``:60``) is rejected. Whether a time
read this way is accepted is a separate rule: it must lie in the accepted range of
``schemas/time_range.py`` (1000-01-01 to 9000-01-01, checked in :mod:`.validate` for
every format). Epoch values beyond about 146 million years are clamped to
:data:`CLAMP_MS`, still outside that range. All with pyarrow.compute and numpy; times
are UTC.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.transforms.parse.normalized import matches

CLAMP_MS = 2**62  # epoch values are clamped to +-CLAMP_MS (no int64 overflow)
_EPOCH_INT = r"^-?[0-9]{1,15}$"
_EPOCH_NUMBER = r"^-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_RFC3339 = (
    r"^(?P<Y>[0-9]{4})-(?P<M>[0-9]{2})-(?P<D>[0-9]{2})[Tt ]"
    r"(?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})(?:\.(?P<f>[0-9]+))?"
    r"(?:[Zz]|(?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}))$"
)
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
# The fixed-width forms of _RFC3339, read from the bytes (ASCII, so a byte is a
# character): "9" a digit, "T" one of "Tt ", "Z" one of "Zz", "+" one of "+-".
_FIXED = (
    "9999-99-99T99:99:99Z",
    "9999-99-99T99:99:99.999Z",
    "9999-99-99T99:99:99+99:99",
    "9999-99-99T99:99:99.999+99:99",
)
_FIELDS = ((0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2))  # Y M D h m s: first, count
_CLASSES = {"9": b"0123456789", "T": b"Tt ", "Z": b"Zz", "+": b"+-"}
_ALLOWED = {  # character of a form -> which of the 256 bytes it accepts
    char: np.isin(np.arange(256), np.frombuffer(_CLASSES.get(char, char.encode()), np.uint8))
    for char in set("".join(_FIXED))
}


def time_from_text(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """RFC 3339 or epoch-millisecond strings -> (UTC epoch ms, ok) as numpy arrays.

    ``ok`` says the text is a time in one of the two forms; it may still lie outside
    the accepted range (its ms, clamped to +-:data:`CLAMP_MS`, tell). The fixed-width
    RFC 3339 forms (:data:`_FIXED`) are read from the bytes; the rest by the regexes.
    """
    fast, ms, ok = _fixed_width_ms(text)
    if not fast.any():
        return _time_from_text_regex(text)
    rest = ~fast
    if rest.any():
        ms[rest], ok[rest] = _time_from_text_regex(text.filter(pa.array(rest)))
    return ms, ok


def _time_from_text_regex(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """:func:`time_from_text` by the regexes alone (every form)."""
    n = len(text)
    ms, ok = np.zeros(n, np.int64), np.zeros(n, bool)
    if n == text.null_count:
        return ms, ok
    is_int = matches(text, _EPOCH_INT)
    if is_int.any():
        ms = np.where(is_int, pc.if_else(pa.array(is_int), text, "0").cast(pa.int64()), ms)
        ok |= is_int
    is_num = matches(text, _EPOCH_NUMBER) & ~is_int
    if is_num.any():
        f = pc.if_else(pa.array(is_num), text, "0").cast(pa.float64()).to_numpy()
        good = is_num & np.isfinite(f)
        ms = np.where(good, clamp_ms(np.where(good, f, 0)), ms)
        ok |= good
    parts = pc.extract_regex(text, _RFC3339)
    is_rfc = parts.is_valid().to_numpy(zero_copy_only=False)
    if is_rfc.any():
        rfc_ms, rfc_ok = _rfc3339_ms(parts)
        ok |= is_rfc & rfc_ok
        ms = np.where(is_rfc, rfc_ms, ms)
    return ms, ok


def clamp_ms(f: np.ndarray) -> np.ndarray:
    """Finite float epoch ms -> int64 ms, floored and clamped to +-:data:`CLAMP_MS`."""
    return np.floor(np.clip(f, -CLAMP_MS, CLAMP_MS)).astype(np.int64)


def _fixed_width_ms(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(whether a row is in a :data:`_FIXED` form, ms, ok), each row's bytes read by
    position over the string buffers; rows not in a form have ms 0, ok False."""
    n = len(text)
    fast, ms, ok = np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, bool)
    large = pa.types.is_large_string(text.type)
    if not (isinstance(text, pa.Array) and (large or pa.types.is_string(text.type))):
        return fast, ms, ok
    _, offsets, data = text.buffers()
    if n == text.null_count or data is None:
        return fast, ms, ok
    kind = np.dtype(np.int64 if large else np.int32)
    starts = np.frombuffer(offsets, kind, n + 1, text.offset * kind.itemsize).astype(np.int64)
    width = np.where(text.is_valid().to_numpy(zero_copy_only=False), np.diff(starts), 0)
    data = np.frombuffer(data, np.uint8)
    for form in _FIXED:
        rows = np.flatnonzero(width == len(form))
        at = [data[starts[rows] + k] for k in range(len(form))]  # byte k of each row
        good = np.logical_and.reduce([_ALLOWED[c][b] for c, b in zip(form, at, strict=True)])
        rows, digit = rows[good], [b[good].astype(np.int64) - ord("0") for b in at]
        if not rows.size:
            continue
        milli = _number(digit, 20, 3) if form[19] == "." else 0
        sign, off_h, off_m, tz = 1, 0, 0, form.find("+")
        if tz > 0:
            sign = np.where(digit[tz] == ord("-") - ord("0"), -1, 1)
            off_h, off_m = _number(digit, tz + 1, 2), _number(digit, tz + 4, 2)
        fields = [_number(digit, first, count) for first, count in _FIELDS]
        fast[rows] = True
        ms[rows], ok[rows] = _civil_ms(*fields, milli, sign, off_h, off_m)
    return fast, ms, ok


def _number(digit: list[np.ndarray], first: int, count: int) -> np.ndarray:
    """The decimal number of the digits ``digit[first:first + count]``."""
    return sum(digit[first + i] * 10 ** (count - 1 - i) for i in range(count))


def _rfc3339_ms(parts: pa.StructArray) -> tuple[np.ndarray, np.ndarray]:
    def num(name: str, width: int = 0) -> np.ndarray:
        s = pc.struct_field(parts, name).fill_null("")
        if width:
            s = pc.utf8_rpad(pc.utf8_slice_codeunits(s, 0, width), width=width, padding="0")
        s = pc.if_else(pc.equal(s, ""), "0", s)
        return s.cast(pa.int64()).to_numpy()

    year, month, day = num("Y"), num("M"), num("D")
    hour, minute, second, milli = num("h"), num("m"), num("s"), num("f", 3)
    off_h, off_m = num("oh"), num("om")
    sign = np.where(pc.equal(pc.struct_field(parts, "sign"), "-").fill_null(False), -1, 1)
    return _civil_ms(year, month, day, hour, minute, second, milli, sign, off_h, off_m)


def _civil_ms(year, month, day, hour, minute, second, milli, sign, off_h, off_m):
    """RFC 3339 fields (numpy ints) -> (UTC epoch ms, whether the fields are valid)."""
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    dim = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + (leap & (month == 2))
    ok = month_ok & (day >= 1) & (day <= dim) & (hour <= 23) & (minute <= 59)
    ok &= (second <= 59) & (off_h <= 23) & (off_m <= 59)
    y = year - (month <= 2)  # days from civil (H. Hinnant), proleptic Gregorian
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    ms = days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + milli
    return ms - sign * (off_h * 3_600_000 + off_m * 60_000), ok
