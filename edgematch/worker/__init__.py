"""The runtime: API client, rate limiter, batch buffer, events, storage, results, CLI."""
