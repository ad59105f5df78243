"""The Celery side: execute calls, sweep, deliver."""
