"""What was computed from what: queries over a store (:mod:`.query`: resolve hashes, check
query arguments), the commit view the CLI and the server share (:mod:`.views`), commit
diffs (:mod:`.diff`) and archives (:mod:`.archive`: export, import).

Below executors and clients (docs/architecture.md): uses ``models``, ``errors``,
``protocols``, ``hashing.commits`` and ``stores``; never a client, an executor or a shell.
"""
