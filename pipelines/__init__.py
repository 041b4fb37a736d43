"""msewatch.pipelines: wiring of transforms into the monitoring pipeline."""
