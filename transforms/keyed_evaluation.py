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
from collections.abc import Callable, Iterable

import apache_beam as beam
from apache_beam import coders
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms import userstate

from msewatch.schemas import state_tree
from msewatch.schemas.slo import AlertTransition, SloStatus, epoch_ms

PROVEN_TIMINGS = ("ON_TIME", "LATE")
ALERTS = "alerts"  # the output of alert transitions (both stages)
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


class RouteBySlice(beam.DoFn):
    """Metrics row -> ``(key, row)`` for each key its slice feeds: ``keys_of(slice name)``
    (a tuple of keys, computed once per slice name: there are few)."""

    def __init__(self, keys_of: Callable[[str], Iterable]):
        self._keys_of = keys_of
        self._keys: dict[str, tuple] = {}

    def process(self, row: dict):
        name = row["slice"]
        keys = self._keys.get(name)
        if keys is None:
            keys = self._keys[name] = tuple(self._keys_of(name))
        for key in keys:
            yield key, row


def emit(clock, tagged: Iterable[tuple[str, Iterable]]):
    """Each record of ``tagged`` (``(tag, records)`` pairs) as its table row, stamped
    with one ``emitted_at`` from ``clock``, on the output ``tag``."""
    now = clock()
    for tag, records in tagged:
        for record in records:
            yield TaggedOutput(tag, record.as_row(now))


state_tree.register(b"A", AlertTransition)
state_tree.register(b"S", SloStatus)


class EvaluatorCoder(state_tree.TreeStateCoder):
    """A key's evaluator state, explicitly (no pickle): its :func:`snapshot` (windows of
    one period or lookback, frontier, alert states; not its configuration, which
    ``new_evaluator`` rebuilds) as a tagged tree (``schemas/state_tree.py``), tag ``MWEV``."""

    MAGIC = b"MWEV"
    VERSION = 1

    def read_payload(self, payload: memoryview) -> dict:
        value = super().read_payload(payload)
        if not isinstance(value, dict):
            raise ValueError("EvaluatorCoder: the payload is not an evaluator snapshot")
        return value


def snapshot(evaluator) -> dict:
    """What an evaluator keeps between panes: its attributes except ``CONFIG_ATTRS``
    (the ones its constructor derives from the SLO or comparison and the slice)."""
    config = type(evaluator).CONFIG_ATTRS
    return {k: v for k, v in vars(evaluator).items() if k not in config}


def restore(evaluator, state: dict):
    """``evaluator`` (fresh from ``new_evaluator``) with the :func:`snapshot` ``state``."""
    for name, value in state.items():
        setattr(evaluator, name, value)
    return evaluator


class EvaluateAtEveryPane(beam.DoFn):
    """Unbounded: one evaluator per key in state, updated at every pane.

    A stage says how to make a key's evaluator (:meth:`new_evaluator`) and names the
    outputs of its ``update(rows, watermark_ms)`` pair in ``TAGS`` (one of them
    :data:`ALERTS`, the transitions); evaluators have ``firing()``, the alerts firing
    now, which are sent again (:data:`RESEND`) after each update.
    """

    EVALUATOR = userstate.ReadModifyWriteStateSpec("evaluator", EvaluatorCoder())
    WATERMARK = userstate.ReadModifyWriteStateSpec("watermark_ms", coders.VarIntCoder())
    TAGS: tuple[str, ...] = ()  # the outputs of update(), in its order

    def __init__(self, clock):
        self._clock = clock

    def new_evaluator(self, key):
        raise NotImplementedError

    def process(
        self,
        element,
        evaluator_state=beam.DoFn.StateParam(EVALUATOR),
        watermark_state=beam.DoFn.StateParam(WATERMARK),
    ):
        key, row = element
        watermark = advance_watermark(row, watermark_state)
        yield from self.evaluate(key, [row], watermark, evaluator_state)

    def evaluate(self, key, rows, watermark_ms, evaluator_state, resend: bool = True):
        """Updates ``key``'s evaluator with ``rows`` (None: the input has ended) and
        yields its outputs (and, when ``resend``, the alerts still firing)."""
        kept = evaluator_state.read()
        evaluator = self.new_evaluator(key)
        if kept is not None:
            restore(evaluator, kept)
        update = evaluator.update(rows, watermark_ms=watermark_ms)
        evaluator_state.write(snapshot(evaluator))
        yield from emit(self._clock, zip(self.TAGS, update, strict=True))
        if resend:
            transitions = update[self.TAGS.index(ALERTS)]
            for row in resends(evaluator.firing(), transitions, self._clock()):
                yield TaggedOutput(RESEND, row)
