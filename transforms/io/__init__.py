"""Sources and sinks: files, the streaming replay and Pub/Sub in; Parquet and BigQuery out."""
