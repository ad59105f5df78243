"""Webhook events: Standard Webhooks signing, and the outbox written with each result."""
