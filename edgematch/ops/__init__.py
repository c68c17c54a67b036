"""On-call tools: the command line, status, backfills, dead-letter commands."""
