"""Parsing input records into Arrow batches: one module per format, shared validation.

* :mod:`.records`: ``parse_predictions`` / ``parse_labels``, one block of a file,
  dispatched by format.
* :mod:`.jsonl`, :mod:`.csv`, :mod:`.parquet`: how each file format is decoded.
* :mod:`.pubsub_messages`: ``parse_json_messages``, a batch of Pub/Sub messages.
* :mod:`.validate`: the rules every format shares (required fields, ids, times,
  numbers, weights, segments) and the dead-letter reasons.
* :mod:`.timestamps`: RFC 3339 and epoch-millisecond times and their range.
* :mod:`.text_blocks`: cutting JSON Lines and CSV text into lines parsed by pyarrow.
* :mod:`.normalized`: the columns a decoder hands to the validation.
"""
