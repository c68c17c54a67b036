"""Infrastructure: the one Redis boundary (and its Lua scripts), the one S3 boundary, keys,
logs, metrics, health, heartbeats, outages and backoff."""
