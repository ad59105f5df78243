"""Who acts: tenants with their API keys, and end users' connected-account credentials."""
