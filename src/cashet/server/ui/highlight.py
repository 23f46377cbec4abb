"""Python source, highlighted on the server with the standard library's ``tokenize``.

Each token becomes an escaped ``<span class="tok-…">``; text between tokens (spaces) is
copied escaped. Source that does not tokenize (cut short, not Python) is shown plain.
No script and no network: the colours are the stylesheet's.
"""

from __future__ import annotations

import builtins
import io
import keyword
import token
import tokenize

from cashet.server.ui.html import Safe, esc, tag

__all__ = ["highlight_python", "plain_code"]

_BUILTINS = frozenset(dir(builtins))


def _kind(tok: tokenize.TokenInfo, previous: tokenize.TokenInfo | None) -> str:
    if tok.type == token.NAME:
        if keyword.iskeyword(tok.string) or keyword.issoftkeyword(tok.string):
            return "kw"
        if previous is not None and previous.string in ("def", "class"):
            return "def"
        if previous is not None and previous.string == "@":
            return "deco"
        if tok.string in _BUILTINS:
            return "builtin"
        return ""
    if tok.type == token.STRING or tok.type in _FSTRING:
        return "str"
    if tok.type == token.NUMBER:
        return "num"
    if tok.type == token.COMMENT:
        return "com"
    if tok.type == token.OP:
        return "deco" if tok.string == "@" else "op"
    return ""


_FSTRING = frozenset(
    getattr(token, name)
    for name in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
    if hasattr(token, name)
)


def _spans(source: str) -> list[str]:
    """The source as highlighted lines (markup), or raise for text that does not tokenize."""
    lines = source.splitlines(keepends=True)
    out: list[list[str]] = [[] for _ in lines]
    row, col = 1, 0  # where the text copied so far ends

    def copy_to(end_row: int, end_col: int, kind: str) -> None:
        nonlocal row, col
        while row < end_row:
            piece = lines[row - 1][col:]
            out[row - 1].append(_span(piece.rstrip("\r\n"), kind))
            row, col = row + 1, 0
        piece = lines[row - 1][col:end_col] if row <= len(lines) else ""
        if piece:
            out[row - 1].append(_span(piece, kind))
        col = end_col

    previous: tokenize.TokenInfo | None = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (token.ENDMARKER, token.DEDENT, token.INDENT, token.NEWLINE, token.NL):
            continue
        (srow, scol), (erow, ecol) = tok.start, tok.end
        copy_to(srow, scol, "")  # whitespace before the token
        copy_to(erow, ecol, _kind(tok, previous))
        previous = tok
    if lines:
        copy_to(len(lines), len(lines[-1].rstrip("\r\n")), "")
    return ["".join(parts) for parts in out]


def _span(text: str, kind: str) -> str:
    if not text:
        return ""
    return tag("span", text, class_=f"tok-{kind}") if kind else esc(text)


def _numbered(lines: list[str]) -> Safe:
    rows = [
        Safe(tag("span", str(i), class_="ln") + Safe(line or " ") + "\n")
        for i, line in enumerate(lines, 1)
    ]
    return tag("pre", tag("code", *rows), class_="code")


def highlight_python(source: str) -> Safe:
    """``source`` as a highlighted, numbered ``<pre>`` (plain when it does not tokenize)."""
    if not source.strip():
        return tag("p", "No source recorded.", class_="muted")
    try:
        lines = _spans(source)
    except (tokenize.TokenError, SyntaxError, IndentationError, IndexError):
        return plain_code(source)
    return _numbered(lines)


def plain_code(text: str) -> Safe:
    """``text`` in a numbered ``<pre>``, escaped, no colours."""
    return _numbered([esc(line) for line in text.splitlines()])
