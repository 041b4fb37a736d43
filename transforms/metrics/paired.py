"""Paired loss moments of two model versions on the same prediction ids (shadow traffic).

When a baseline and a candidate model version both predicted an id and one label
scored both (the join de-duplicates per ``(prediction_id, model_version)``), the
comparison of the two can use the per-id difference of their losses, which cancels
the label's own noise: a paired test needs far fewer predictions than comparing the
two groups' means. This module finds those pairs in a batch of ``EXAMPLES`` and sums,
per group, the moments a paired test needs; the comparisons
(:mod:`msewatch.transforms.compare`) read them from the ``paired`` column of the
candidate's ``metrics`` rows.

Per configured ``(baseline, candidate)`` pair, over the ids whose LABELED examples of
both versions are *scored* (finite ``y_pred``, ``y_true`` and squared error) and sit in
the same batch (the join emits the examples one label scores together), with
``b``/``c`` the baseline's/candidate's squared error and ``|b|``/``|c|`` their absolute
errors:

``n``, ``sum_se_b = Σb``, ``sum_se_c = Σc``, ``sum_se_bb = Σb²``, ``sum_se_cc = Σc²``,
``sum_se_bc = Σbc``, ``sum_ae_b = Σ|e_b|``, ``sum_ae_c = Σ|e_c|``,
``sum_ae_bc = Σ|e_b||e_c|`` (``Σ|e|² = Σe²`` is ``sum_se_*``).

The sums are unweighted (a pair is one id; weights are for the group means) and are
attributed to the candidate's example, so they land in the candidate's slices that
carry ``model_version`` (``model_version=v2``, ``model_version=v2,region=eu``).
Everything is vectorized over the batch: one dictionary encoding of the ids, one
lookup per pair, one ``np.bincount`` per moment.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.schemas.records import ExampleKind

MOMENTS = (
    "n",
    "sum_se_b",
    "sum_se_c",
    "sum_se_bb",
    "sum_se_cc",
    "sum_se_bc",
    "sum_ae_b",
    "sum_ae_c",
    "sum_ae_bc",
)
"""The moments of one (baseline, candidate, group), in this order."""

Paired = tuple[tuple[str, tuple[float, ...]], ...]
"""``((baseline, moments), ...)`` sorted by baseline: the ``paired`` of an accumulator."""


def check_pairs(pairs) -> tuple[tuple[str, str], ...]:
    """``pairs`` as a tuple of distinct ``(baseline, candidate)`` version pairs.

    Raises:
        ValueError: a pair that is not two different non-empty strings.
    """
    out = []
    for pair in pairs or ():
        ok = isinstance(pair, tuple | list) and len(pair) == 2
        if not ok or not all(isinstance(v, str) and v for v in pair) or pair[0] == pair[1]:
            raise ValueError(f"a version pair is (baseline, candidate), two versions; got {pair!r}")
        if tuple(pair) not in out:
            out.append(tuple(pair))
    return tuple(out)


def pair_rows(table: pa.Table, pairs) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The candidate rows of ``table`` that have a scored baseline twin, per pair.

    Args:
        table: an EXAMPLES batch (with ``prediction_id``).
        pairs: ``(baseline, candidate)`` version pairs.

    Returns:
        Per pair with at least one twin: ``(baseline, rows, moments)``, ``rows`` the
        candidate's row indices and ``moments`` an ``(len(rows), 8)`` array of
        ``b, c, b², c², bc, |e_b|, |e_c|, |e_b||e_c|`` (the per-row terms of
        :data:`MOMENTS` after ``n``).
    """
    if not pairs or table.num_rows == 0:
        return []
    kind = table.column("kind").to_numpy(zero_copy_only=False)
    with np.errstate(all="ignore"):
        err = table.column("y_pred").to_numpy(zero_copy_only=False) - table.column(
            "y_true"
        ).to_numpy(zero_copy_only=False)
        se = err * err
    scored = (kind == ExampleKind.LABELED) & np.isfinite(se)
    if not scored.any():
        return []
    versions = table.column("model_version")
    ids = table.column("prediction_id")
    out = []
    for baseline, candidate in pairs:
        is_b = scored & pc.equal(versions, baseline).to_numpy(zero_copy_only=False)
        is_c = scored & pc.equal(versions, candidate).to_numpy(zero_copy_only=False)
        if not (is_b.any() and is_c.any()):
            continue
        b_rows, c_rows = np.flatnonzero(is_b), np.flatnonzero(is_c)
        twin = pc.index_in(pc.take(ids, pa.array(c_rows)), value_set=pc.take(ids, pa.array(b_rows)))
        has = pc.is_valid(twin).to_numpy(zero_copy_only=False)
        if not has.any():
            continue
        rows = c_rows[has]
        twin_rows = b_rows[twin.to_numpy(zero_copy_only=False)[has].astype(np.int64)]
        b, c = se[twin_rows], se[rows]
        ab, ac = np.abs(err[twin_rows]), np.abs(err[rows])
        out.append((baseline, rows, np.column_stack([b, c, b * b, c * c, b * c, ab, ac, ab * ac])))
    return out


def group_paired(found, group: np.ndarray, n_groups: int) -> list[Paired]:
    """Per group, the paired moments of its candidate rows (``()`` where it has none).

    Args:
        found: what :func:`pair_rows` returned for the batch.
        group: the group code of every row of the batch.
        n_groups: the number of groups.
    """
    per_group: list[list] = [[] for _ in range(n_groups)]
    for baseline, rows, terms in found:
        codes = group[rows]
        n = np.bincount(codes, minlength=n_groups)
        sums = [np.bincount(codes, weights=terms[:, j], minlength=n_groups) for j in range(8)]
        for g in np.flatnonzero(n).tolist():
            per_group[g].append((baseline, (float(n[g]), *(float(s[g]) for s in sums))))
    return [tuple(sorted(entries)) for entries in per_group]


def merge_paired(parts) -> Paired:
    """The element-wise sum of ``paired`` tuples, per baseline (empty tuples are zeros)."""
    present = [p for p in parts if p]
    if len(present) <= 1:
        return present[0] if present else ()
    totals: dict[str, list[float]] = {}
    for part in present:
        for baseline, moments in part:
            acc = totals.get(baseline)
            totals[baseline] = (
                list(moments) if acc is None else [a + m for a, m in zip(acc, moments, strict=True)]
            )
    return tuple((b, tuple(m)) for b, m in sorted(totals.items()))


def paired_column(paired: Paired) -> list[dict]:
    """The ``paired`` column of a metrics row: one dict per baseline."""
    return [
        {
            "baseline": b,
            **{
                name: (int(v) if name == "n" else float(v))
                for name, v in zip(MOMENTS, m, strict=True)
            },
        }
        for b, m in paired
    ]
