"""Webhook events to tenants' receivers: `deliveries` claims, signs and records each attempt;
`sender` runs the attempts on the process's event loop under their own budget."""
