"""The worker's publisher: `models.broker` over the worker's own Celery app."""

from __future__ import annotations

from models.broker import BrokerPublisher
from worker.app import app

publisher = BrokerPublisher(app)
