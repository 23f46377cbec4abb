"""The ``cashet`` command line (Click + Rich): a thin shell over :class:`cashet.Client`.

A shell (docs/architecture.md): calls ``Client`` methods only (never a store). :mod:`.app`
holds the group, its options and error mapping; each command family is a module of its own,
added to the group here, so no command module is imported back by the group.
"""

from cashet.cli.app import main
from cashet.cli.archive import export, import_
from cashet.cli.doctor import doctor
from cashet.cli.maintenance import clear, gc, invalidate, rm, stats
from cashet.cli.observe import graph, verify
from cashet.cli.provenance import diff, get, history, log, show
from cashet.cli.serve import serve
from cashet.cli.sync import pull, push
from cashet.cli.why import why

for _command in (log, show, get, diff, history, why, graph):  # queries
    main.add_command(_command)
for _command in (stats, verify, rm, gc, clear, invalidate, doctor, export, import_, push, pull):
    main.add_command(_command)
main.add_command(serve)
main.add_command(log, "list")  # the published cashet's name for log

__all__ = ["main"]
