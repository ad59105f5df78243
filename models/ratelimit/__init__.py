"""Global rate limits: the pure GCRA rules, and the store that keeps their state in Redis."""
