"""The shared Redis stores: pure key layout and Lua scripts (``keys``, ``scripts/*.lua``),
the decisions of every operation (``ops``; leases in ``claim_ops``; ``calls`` is their
vocabulary), and the sync and async drivers (``store``, ``async_store``; what they share in
``common``).

Public path: :mod:`cashet.redis_store` (``RedisStore``, ``AsyncRedisStore``).
"""
