"""Store text made safe for where the report shows it: a terminal, an SVG picture, markdown.

Names and error messages in the health store come from flow code, parameters and files other
writers made, so they can carry anything: terminal escape sequences (clear the screen, set the
window title, an OSC 8 link), C1 controls, bidi overrides that reorder what a reader sees, NUL,
lone surrogates. ``visible`` turns every such character into its escape written out
(``\\x1b``, ``\\u202e``), so the text stays readable and nothing reaches a terminal or a
document raw; ``terminal_text`` and ``xml_text`` build on it (pure functions).
"""

from __future__ import annotations

import unicodedata
from typing import Any
from xml.sax.saxutils import escape as xml_escape

# Format characters (``Cf``) that scripts and emoji need and that cannot reorder or hide text:
# the zero-width joiner and non-joiner stay (Persian, Indic scripts, emoji sequences).
_KEPT_FORMAT = frozenset({"\u200c", "\u200d"})
# Unicode categories written out as escapes: controls (C0, DEL, C1), format characters (bidi
# overrides and isolates, zero-width spaces, BOM), lone surrogates, line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _is_noncharacter(code: int) -> bool:
    """U+FDD0..U+FDEF and the last two code points of every plane (U+FFFE, U+FFFF, U+1FFFE, ...)."""
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def _needs_escape(char: str) -> bool:
    if " " <= char <= "~":  # printable ASCII: the common case, no lookup
        return False
    if char in _KEPT_FORMAT:
        return False
    return unicodedata.category(char) in _ESCAPED_CATEGORIES or _is_noncharacter(ord(char))


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(value: Any, *, keep_newlines: bool = False) -> str:
    """``value`` as text with every control, format and separator character written out as its escape.

    ``"\\x1b[2J"`` (clear screen) becomes the eight characters ``\\x1b[2J``; U+202E (right-to-left
    override) becomes ``\\u202e``; lone surrogates and noncharacters (U+FFFE) too. Printable text of
    any script, emoji and the zero-width joiners are kept as they are. ``keep_newlines`` keeps
    ``\\n`` (a multi-line message); otherwise it is written out like the rest.

    Returns:
        Text holding no control character (but ``\\n`` with ``keep_newlines``), no bidi control, no
        lone surrogate: safe in a terminal, valid in XML once ``&``, ``<`` and ``>`` are escaped.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isascii() and text.isprintable():
        return text  # the usual case: nothing to look at twice
    return "".join(_escaped(c) if _needs_escape(c) and not (keep_newlines and c == "\n") else c for c in text)


def terminal_text(value: Any) -> str:
    """Text for one terminal line: ``visible`` (a newline written out as ``\\n`` too).

    Rich markup is not interpreted only if the caller prints it as ``rich.text.Text`` (as the
    report's tables do), never as a markup string.
    """
    return visible(value)


def xml_text(value: Any) -> str:
    """Text for an XML element or attribute value (SVG): ``visible``, then ``&``, ``<``, ``>``, ``"``
    escaped. Valid XML 1.0 for any input (it forbids most C0 controls even as character references,
    lone surrogates, U+FFFE and U+FFFF)."""
    return xml_escape(visible(value), {'"': "&quot;"})
