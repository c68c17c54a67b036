"""The pipeline stages, from an upload event to a recorded result: events, intake, ingest,
the batch buffer and limiter, match, results, verdicts and tags, backpressure."""
