"""The Celery app the Celery tests' worker runs: ``celery -A tests._celery_app worker``.

Configured by the environment the test sets: ``CASHET_TEST_BROKER`` (RabbitMQ) and
``CASHET_TEST_QUEUE`` (the app's default queue: a fresh one per test module, so that no
other run's messages are consumed). Late acknowledgement, and a message requeued when its
worker process dies: at-least-once delivery, made exactly-once by cashet's leases.
"""

from __future__ import annotations

import os

from celery import Celery

from cashet.executor import CeleryExecutor

app = Celery("cashet_test", broker=os.environ.get("CASHET_TEST_BROKER", "memory://"))
app.conf.update(
    task_default_queue=os.environ.get("CASHET_TEST_QUEUE", "cashet-test"),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
executor = CeleryExecutor(app, remote=False, poll=0.05)
