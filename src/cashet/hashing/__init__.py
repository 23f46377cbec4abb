"""Pure hashing: function identities, argument digests and display snapshots (no IO).

``client.submit(f, *args, **kw)`` keys its cache on ``f"{identity.hash}:{args_hash}"`` with
``identity = function_identity(f)`` and ``args_hash = hash_call(f, args, kw, refs)``; the
``ResultRef``s collected in ``refs`` are the call's upstream inputs. What is in the key and
what is not: ``docs/cache-keys.md``.

The package's modules, bottom to top (each imports only those before it):

* ``_blake``: BLAKE3 hashers, multithreaded for big inputs and safe across ``fork``.
* ``encoder``: the canonical stream (tags, per-call state) and its type dispatch table.
* ``containers``, ``scalars``, ``objects``, ``arrays``: the handlers, one family each.
* ``values``: fills the dispatch table; ``hash_args``, ``hash_value``, ``hash_bytes``.
* ``source``, ``dependencies``: a function's normalized source, and what it reaches.
* ``reads``, ``keyparts``: which values the code reads (not only writes into), and how each
  is taken into the key (hashed once, per call, or left out and named in a warning).
* ``functions``: ``function_identity``; plugs itself into ``objects`` for functions and user
  classes met as values (the only run-time recursion between the two halves).
* ``calls``: ``hash_call``, the argument key with the call bound to the signature.
* ``snapshot``: ``args_snapshot``, display text of arguments.
"""

from __future__ import annotations

from cashet.errors import ClosureWarning
from cashet.hashing.calls import hash_call
from cashet.hashing.functions import FunctionIdentity, KeyValue, function_identity
from cashet.hashing.keyparts import ignore
from cashet.hashing.snapshot import args_snapshot
from cashet.hashing.values import hash_args, hash_bytes, hash_value
from cashet.protocols import Serializer

__all__ = [
    "ClosureWarning",
    "FunctionIdentity",
    "KeyValue",
    "Serializer",
    "args_snapshot",
    "function_identity",
    "hash_args",
    "hash_bytes",
    "hash_call",
    "hash_value",
    "ignore",
]
