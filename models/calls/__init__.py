"""A call's life as data: its state machine and the resource the API and webhooks show."""
