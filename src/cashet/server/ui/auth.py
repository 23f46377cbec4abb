"""Who may see the web UI: the server's token, by header or by a session cookie.

With a token, every ``/ui/`` page needs it, as every API path does: ``Authorization:
Bearer <token>``, or the cookie the login form sets (``HttpOnly``, ``SameSite=Strict``,
path ``/ui``). The cookie holds an HMAC of the token, never the token; both are checked in
constant time (equal-length digests). Only the login form and the stylesheet and scripts
(which hold no cache data) are served without it. Forms that change the store carry a CSRF
value (another HMAC of the token) besides the cookie.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "COOKIE",
    "PUBLIC_PATHS",
    "UiAuth",
    "cookie_value",
]

COOKIE = "cashet_session"
#: Served without the token: they hold no cache data.
PUBLIC_PATHS = ("/ui/login", "/ui/static/")


def _mac(token: str, purpose: bytes) -> str:
    return hmac.new(token.encode(), b"cashet-ui/" + purpose, hashlib.sha256).hexdigest()


def cookie_value(headers: list[tuple[bytes, bytes]], name: str = COOKIE) -> bytes | None:
    """The value of cookie ``name`` in the request's ``Cookie`` headers, or ``None``."""
    found: bytes | None = None
    wanted = name.encode()
    for key, value in headers:
        if key.lower() != b"cookie":
            continue
        for part in value.split(b";"):
            k, sep, v = part.strip().partition(b"=")
            if sep and k == wanted:
                if found is not None:
                    return None  # two: ambiguous
                found = v.strip()
    return found


class UiAuth:
    """The UI's checks for one server token (``None``: the UI is open, as the API is)."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._session = None if token is None else _digest(_mac(token, b"session").encode())
        self._token = None if token is None else _digest(token.encode())

    @property
    def session(self) -> str:
        """The cookie value that proves the token was given."""
        assert self.token is not None
        return _mac(self.token, b"session")

    @property
    def csrf(self) -> str:
        """The value forms that change the store must carry."""
        return "" if self.token is None else _mac(self.token, b"csrf")

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the token (constant time)."""
        if self._token is None:
            return True
        return hmac.compare_digest(_digest(given.encode()), self._token)

    def has_session(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether the request carries the session cookie (constant time)."""
        if self._session is None:
            return True
        given = cookie_value(headers)
        ok = hmac.compare_digest(_digest(given or b""), self._session)
        return ok and given is not None

    def csrf_matches(self, given: str) -> bool:
        """Whether a form's CSRF value is right (constant time)."""
        if self.token is None:
            return False
        return hmac.compare_digest(_digest(given.encode()), _digest(self.csrf.encode()))


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def is_public(path: str) -> bool:
    """Whether ``path`` is served without the token (the login form, the assets)."""
    return path == PUBLIC_PATHS[0] or path.startswith(PUBLIC_PATHS[1])
