"""Secrets at rest: hashing, encryption bound to a row, and key rotation."""
