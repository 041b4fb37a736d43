"""Drives the streaming join kernel the way the stateful DoFn does, for the unit tests.

One ``step`` per batch of records in arrival order (time order, ties by position), and
``expire`` whenever the watermark passes the shard's next deadline (timely watermarks:
the watermark is just before the next batch's first record).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.schemas.records import ExampleKind
from msewatch.transforms.join import kernel as jk
from msewatch.transforms.join.conflicts import JOIN_DETAILS


def labeled_rows(examples: pa.Table) -> list[tuple]:
    """The LABELED examples as sorted ``(prediction_id, model_version, y_pred, y_true,
    label_lag_s)`` tuples."""
    lab = examples.filter(pc.equal(examples.column("kind"), ExampleKind.LABELED))
    cols = ("prediction_id", "model_version", "y_pred", "y_true", "label_lag_s")
    return sorted(zip(*(lab.column(c).to_pylist() for c in cols), strict=True))


def run_streaming(preds: pa.Table, labs: pa.Table, batch: int, cfg: jk.JoinConfig):
    """Replays records in time order, ``batch`` distinct times per step.

    Returns:
        ``(counts, examples)``: the summed outcome counts and every emitted example.
    """
    p_order = np.lexsort([preds.column("position").to_numpy(), preds.column("event_time_ms")])
    l_order = np.lexsort([labs.column("position").to_numpy(), labs.column("label_time_ms")])
    preds, labs = preds.take(p_order), labs.take(l_order)
    pt, lt = preds.column("event_time_ms").to_numpy(), labs.column("label_time_ms").to_numpy()
    times = np.sort(np.concatenate([pt, lt]))
    state = jk.ShardState.empty(cfg)
    total = dict.fromkeys((*jk.JOIN_COUNTERS, *JOIN_DETAILS), 0)
    out: list[pa.Table] = []
    cuts = list(times[::batch]) + [times[-1] + 1 if len(times) else 0]

    def add(examples, counts):
        out.append(examples)
        for k in total:
            total[k] += counts[k]

    def fire_until(watermark):
        nonlocal state
        while (d := jk.next_deadline_ms(state, cfg)) is not None and d <= watermark:
            state, examples, counts = jk.expire(state, d, cfg)
            add(examples, counts)

    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        fire_until(lo - 1)
        pa_, pb = np.searchsorted(pt, [lo, hi])
        la, lb = np.searchsorted(lt, [lo, hi])
        state, examples, counts = jk.step(
            state, preds.slice(pa_, pb - pa_), labs.slice(la, lb - la), cfg
        )
        add(examples, counts)
    fire_until(2**62)
    assert state.size == 0, "the state empties once every deadline has passed"
    return total, pa.concat_tables([cfg.example_schema.empty_table(), *out])
