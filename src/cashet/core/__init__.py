"""The IO-free core: the call flow and its effects, leases, options, batch planning, refs.

Pure decisions only: no store, no thread, no event loop. Executors drive it (``executors/``).
"""
