"""What the SLO and comparison stages share: metrics rows evaluated per key over time.

Both route each ``metrics`` pane to the keys it feeds (``(slo, slice)``,
``(comparison, slice)``: a pair of str, so the key coder is deterministic), in the
global window, then evaluate each key's windows in event-time order:

* bounded input: one ``GroupByKey`` hands a key all its panes at the end (``history``);
* unbounded input: a stateful DoFn updates the key's evaluator at every pane
  (``streaming``).

Beam does not show a DoFn its input watermark; :func:`proven_watermark` is the lower
bound the panes prove: the largest window end of an ON_TIME or LATE pane a key has
seen (the watermark has passed it).
"""

from __future__ import annotations

import typing

import apache_beam as beam

from msewatch.schemas.slo import epoch_ms

PROVEN_TIMINGS = ("ON_TIME", "LATE")
RESEND = "resend"  # the output of firing alerts to send again (streaming)
KEY_TYPE = typing.Tuple[typing.Tuple[str, str], typing.Dict[str, typing.Any]]  # noqa: UP006


def proven_watermark(row: dict, watermark_ms: int | None) -> int | None:
    """``watermark_ms`` moved up to the end of ``row``'s window if its pane proves it."""
    if row.get("pane_timing") not in PROVEN_TIMINGS:
        return watermark_ms
    end = epoch_ms(row["window_end"])
    return end if watermark_ms is None else max(watermark_ms, end)


def advance_watermark(row: dict, state) -> int | None:
    """The key's proven watermark after ``row``, kept in the ``state`` cell."""
    watermark = proven_watermark(row, state.read())
    if watermark is not None:
        state.write(watermark)
    return watermark


def resends(firing, transitions, now) -> list[dict]:
    """The ``resend`` rows of a streaming update: every alert still firing that the
    update did not just fire (Alertmanager forgets an alert it has not heard of for
    its ``resolve_timeout``), marked ``transition = False``."""
    fired_now = {t.alert for t in transitions}
    return [{**t.as_row(now), "transition": False} for t in firing if t.alert not in fired_now]


def evaluate_per_key(
    metrics,
    route: beam.DoFn,
    history: beam.DoFn,
    streaming: beam.DoFn,
    tags: tuple[str, ...],
    bounded: bool,
    group_label: str,
) -> dict:
    """The steps ``GlobalWindow``, ``Route``, then ``<group_label>`` and ``History``
    (bounded) or ``AtEveryPane`` (unbounded); returns ``{tag: PCollection}``."""
    keyed = (
        metrics
        | "GlobalWindow" >> beam.WindowInto(beam.window.GlobalWindows())
        | "Route" >> beam.ParDo(route).with_output_types(KEY_TYPE)
    )
    if bounded:
        evaluated = (
            keyed
            | group_label >> beam.GroupByKey()
            | "History" >> beam.ParDo(history).with_outputs(*tags)
        )
    else:
        evaluated = keyed | "AtEveryPane" >> beam.ParDo(streaming).with_outputs(*tags)
    return {tag: evaluated[tag] for tag in tags}
