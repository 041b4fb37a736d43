"""Sources: each is a PTransform from PBegin to ``{predictions, labels, dead_letter}``.

* :class:`FileSource`: bounded JSON Lines / CSV / Parquet globs.
* ``msewatch.transforms.replay.ReplaySpool``: a streaming replay of files.
"""

from __future__ import annotations

import apache_beam as beam

from msewatch.transforms.readers import ReadRecords


class FileSource(beam.PTransform):
    """Reads prediction and label files (bounded).

    Args:
        predictions: glob of prediction files.
        labels: glob of label files.
        segment_keys: segment attributes to keep for slicing.
    """

    def __init__(self, predictions: str, labels: str, segment_keys: tuple[str, ...]):
        super().__init__()
        self._predictions = predictions
        self._labels = labels
        self._segment_keys = segment_keys

    def expand(self, pbegin):
        preds = pbegin | "ReadPredictions" >> ReadRecords(
            self._predictions, "prediction", self._segment_keys
        )
        labels = pbegin | "ReadLabels" >> ReadRecords(self._labels, "label")
        dead = (preds["dead_letter"], labels["dead_letter"]) | "FlattenDeadLetter" >> beam.Flatten()
        return {"predictions": preds["records"], "labels": labels["records"], "dead_letter": dead}
