"""The web UI (``/ui/``): pages over the cache a server serves, read from its client.

:mod:`.routes` receives requests and calls the client through the server's backend (the
public client methods, as every endpoint); :mod:`.views` and :mod:`.compare` render pages,
:mod:`.html` escapes everything they show, :mod:`.highlight` colours source,
:mod:`.graph` draws the lineage, :mod:`.auth` checks the token and the session cookie.
Assets (``static/``) ship in the package: nothing is loaded from the network.

Kept free of imports: :mod:`cashet.server.guard` uses :mod:`.auth`.
"""
