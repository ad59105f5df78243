"""The worker's publisher: `models.broker` over the worker's own Celery app."""

from __future__ import annotations

from models.broker import BrokerPublisher, lane_client
from models.settings import get_settings
from worker.app import app

publisher = BrokerPublisher(app, lane_client(get_settings().redis_url))
