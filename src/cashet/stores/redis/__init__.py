"""The shared Redis stores: pure key layout and scripts (``keys``), the decisions of every
operation (``ops``), and the sync and async drivers (``store``, ``async_store``, sharing
``common``).

Public path: :mod:`cashet.redis_store` (``RedisStore``, ``AsyncRedisStore``).
"""
