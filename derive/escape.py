"""User text (names, descriptions, file names, formulas, flags) escaped for where it lands.

Every output that shows text from a spec or a command line passes it through one function of
this module, so the text stays data: it cannot close a Python string, start a LaTeX command,
open math mode, become HTML or move the terminal's cursor. Each function leaves ordinary text
(letters, digits, spaces, ``.,;:=+-*/()'``) as it was.
"""
import re
import unicodedata

#: Unicode categories that can steer a terminal, an editor or a parser: control characters,
#: format characters (bidi overrides, BOM, zero-width), line/paragraph separators, surrogates,
#: private-use and unassigned code points.
_HIDDEN = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))


def _is_hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN


def _code(char: str) -> str:
    r"""``\n``, ``\x1b``, ``\u2028``: the character as a Python escape."""
    named = {"\n": r"\n", "\r": r"\r", "\t": r"\t"}
    if char in named:
        return named[char]
    n = ord(char)
    return rf"\x{n:02x}" if n < 0x100 else rf"\u{n:04x}" if n < 0x10000 else rf"\U{n:08x}"


def terminal_text(text: str, keep: str = "") -> str:
    r"""``text`` with every control or invisible character shown as its escape (``\x1b``), one line.

    ``keep`` names characters to leave as they are (``"\n\t"`` for a multi-line description)."""
    return "".join(_code(c) if _is_hidden(c) and c not in keep else c for c in str(text))


_DOCTEST_PROMPT = re.compile(r"^( *)>>>", re.MULTILINE)


def python_docstring(text: str) -> str:
    r"""``text`` as the inside of a triple-quoted (not raw) docstring whose value is ``text`` again.

    Backslashes are doubled; a ``"`` next to another ``"`` or at either end is written ``\"``, so
    no three quotes in a row can appear; newlines stay, every other hidden character (a tab too)
    becomes its escape. The one change to the value: a line starting ``>>>`` starts ``\>>>``, so
    doctest never runs a line of a description.
    """
    text = _DOCTEST_PROMPT.sub(lambda m: m[1] + "\\>>>", str(text))
    out = []
    for i, c in enumerate(text):
        if c == "\\":
            out.append("\\\\")
        elif c == '"' and (i == 0 or i == len(text) - 1 or text[i - 1] == '"' or text[i + 1] == '"'):
            out.append('\\"')
        elif _is_hidden(c) and c != "\n":
            out.append(_code(c))
        else:
            out.append(c)
    return "".join(out)


def python_comment(text: str) -> str:
    """``text`` inside a ``#`` comment: on one line, whatever it contains."""
    return terminal_text(text)


_LATEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
          "^": r"\^{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}", "<": r"\textless{}",
          ">": r"\textgreater{}", "|": r"\textbar{}"}


def latex_text(text: str) -> str:
    r"""``text`` for LaTeX text mode: the ten special characters (and ``< > |``, which OT1 prints
    as other glyphs) as their text commands, hidden characters as their escapes (``\x1b``)."""
    return "".join(_LATEX.get(c, c) for c in terminal_text(text))


#: Characters Markdown (CommonMark, GFM, KaTeX/MathJax renderers) reads as HTML, math or syntax in
#: running text, written as character references, which Markdown never reads as any of those.
_MARKDOWN = {"&": "&amp;", "<": "&lt;", ">": "&gt;", **{c: f"&#{ord(c)};" for c in "\\$`*[]!|~{}#"}}


def markdown_text(text: str) -> str:
    """``text`` as literal Markdown text: ``& < >``, ``$``, ``\\`` and Markdown's punctuation as
    character references (no HTML, no math delimiter, no emphasis, link or code), ``_`` too
    where it could emphasize (not between two letters or digits), hidden characters as their
    escapes, on one line."""
    text = terminal_text(text)
    out = []
    for i, c in enumerate(text):
        if c in _MARKDOWN:
            out.append(_MARKDOWN[c])
        elif c == "_" and not (0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()):
            out.append("&#95;")
        else:
            out.append(c)
    return "".join(out)
