"""The Celery app of the cluster suite's worker: ``celery -A _celery_bench_app worker``.

Run from ``bench/`` (on ``PYTHONPATH``), configured by the environment the suite sets:
``CASHET_BENCH_BROKER`` (RabbitMQ) and ``CASHET_BENCH_QUEUE`` (a fresh queue per run, so no
other run's messages are consumed). Late acknowledgement and one message prefetched per
process, as ``tests/_celery_app.py``.
"""

from __future__ import annotations

import os

from celery import Celery

from cashet.executor import CeleryExecutor

app = Celery("cashet_bench", broker=os.environ.get("CASHET_BENCH_BROKER", "memory://"))
app.conf.update(
    task_default_queue=os.environ.get("CASHET_BENCH_QUEUE", "cashet-bench"),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
executor = CeleryExecutor(app, remote=False, poll=0.05)
