"""Public import path of the Redis stores: ``from cashet.redis_store import RedisStore``.

Needs the ``redis`` extra (``pip install "cashet[redis]"``); without it this import raises
``ImportError`` saying so.
"""

from __future__ import annotations

from cashet.stores.redis.async_store import AsyncRedisStore
from cashet.stores.redis.store import RedisStore

__all__ = ["AsyncRedisStore", "RedisStore"]
