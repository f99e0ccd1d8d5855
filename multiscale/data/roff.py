"""Running text from roff manual-page sources (man and mdoc macros).

`roff_to_text(source)` strips requests, font and size escapes, comments, macro definitions,
tables' format lines and code examples, keeps the prose (including the text arguments of
heading and font macros), and returns paragraphs separated by newlines.
"""

from __future__ import annotations

import re

# Macros whose arguments are running text (man(7) and mdoc(7)).
_TEXT_MACROS = frozenset("SH SS B I BR BI IB IR RB RI SB SM SY OP UR MT Sh Ss Nm Nd Em Dq Qq Sq Pq Ql Pa Ar "
                         "Fl Cm Xr It Op Va Fn Fa Ev Li Sy Dv Er Ic Ad Ms Tn D1 Dl".split())
# mdoc macro names that may appear inside the arguments of another mdoc macro.
_MDOC_INLINE = frozenset("Ar Fl Cm Xr Pa Op Oo Oc Dq Do Dc Qq Sq Pq Ql Em Sy Li Va Fn Fa Ev Dv Er Ic Ns No Pf Bq Brq "
                         "Ek Bk Ad Ms Tn Nm Xo Xc Sx Aq Ta".split())
# Macros that start a new paragraph.
_BREAK_MACROS = frozenset("SH SS PP P LP TP IP HP Pp Sh Ss It Bl El Bd Ed br sp TQ RS RE Lp".split())
_SPECIAL = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "aq": "'", "dq": '"', "lq": "\u201c",
    "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "bu": "\u2022", "co": "\u00a9",
    "rg": "\u00ae", "tm": "\u2122", "->": "\u2192", "<-": "\u2190", "mu": "\u00d7",
    "de": "\u00b0", "Fo": "\u00ab", "Fc": "\u00bb", "fo": "\u2039", "fc": "\u203a",
    "ga": "`", "ti": "~", "ha": "^", "rs": "\\", "ba": "|", "or": "|", "lh": "\u261c",
    "rh": "\u261e", "pl": "+", "mi": "-", "eq": "=", "<=": "\u2264", ">=": "\u2265",
    "R": "\u00ae", "Tm": "\u2122", "sq": "\u25a1", "Do": "$", "Eu": "\u20ac", "eu": "\u20ac",
    "ss": "\u00df", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "la": "\u27e8", "ra": "\u27e9",
}
_ESCAPE = re.compile(
    r"""\\(?:
        f(?:\[[^\]]*\]|\(..|.)              # font
      | s[+-]?(?:\d|\(\d\d|\[\d+\])          # size
      | [*](?:\[(?P<str_b>[^\]]*)\]|\((?P<str_p>..)|(?P<str_c>.))   # string
      | \[(?P<named>[^\]]*)\]                # named glyph \[em] or \[u00E9]
      | \((?P<two>..)                        # two-letter glyph \(em
      | [nkgmYV](?:\[[^\]]*\]|\(..|.)        # registers, colours
      | [hvwlLNbDoXxRHSZ]'[^']*'             # escapes with a quoted argument
      | (?P<one>.)                           # any other one-character escape
    )""",
    re.VERBOSE,
)
_ONE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": " ", "'": "'", "`": "`", ".": "."}


def _escape_sub(m: re.Match) -> str:
    name = m.group("named") or m.group("two")
    if name is not None:
        if name.startswith("u") and len(name) >= 5:
            try:
                return "".join(chr(int(part, 16)) for part in name[1:].split("_"))
            except ValueError:
                return ""
        return _SPECIAL.get(name, "")
    s = m.group("str_b") or m.group("str_p") or m.group("str_c")
    if s is not None:
        return {"lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "Tm": "\u2122", "(lq": "\u201c"}.get(s, "")
    one = m.group("one")
    if one is not None:
        return _ONE.get(one, "")
    return ""


def _strip_escapes(line: str) -> str:
    # a comment \" ends the line
    idx = line.find('\\"')
    if idx >= 0:
        line = line[:idx]
    return _ESCAPE.sub(_escape_sub, line)


def _split_args(rest: str) -> list[str]:
    args, cur, quoted = [], [], False
    for ch in rest:
        if ch == '"':
            quoted = not quoted
        elif ch in " \t" and not quoted:
            if cur:
                args.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        args.append("".join(cur))
    return args


class _RoffReader:
    """The state of one pass over a roff page: finished paragraphs, the open one, and what
    is being skipped (a macro definition, an example, a table's format lines)."""

    def __init__(self):
        self.paragraphs: list[str] = []
        self.current: list[str] = []
        self.skip_until: str | None = None
        self.table_format = False

    def flush(self) -> None:
        if self.current:
            text = " ".join(self.current).strip()
            text = re.sub(r"[ \t]+", " ", text)
            if text:
                self.paragraphs.append(text)
            self.current.clear()

    def line(self, raw: str) -> None:
        if self.skip_until is not None:
            if raw.strip().startswith(self.skip_until):
                self.skip_until = None
            return
        if self.table_format:
            if raw.rstrip().endswith("."):
                self.table_format = False
            return
        if raw.startswith((".", "'")):
            self.request(raw[1:].lstrip())
            return
        line = _strip_escapes(raw)
        if "\t" in line:
            line = line.replace("\t", " ")
        if line.strip():
            self.current.append(line.strip())
        else:
            self.flush()

    def request(self, body: str) -> None:
        """A control line (`.XX args`)."""
        if body.startswith('\\"') or not body:
            return
        parts = body.split(None, 1)
        macro = parts[0]
        rest = parts[1] if len(parts) > 1 else ""
        if macro in ("de", "de1", "am", "ig"):
            self.skip_until = ".."
            return
        if macro == "EX":
            self.skip_until = ".EE"
            return
        if macro == "TS":
            self.table_format = True
            self.flush()
            return
        if macro == "so":  # a link to another page: no text of its own
            return
        if macro in _BREAK_MACROS:
            self.flush()
        if macro not in _TEXT_MACROS:
            return
        args = _split_args(_strip_escapes(rest))
        if macro[:1].isupper() and macro[1:2].islower():  # mdoc
            args = [a for a in args if a not in _MDOC_INLINE]
        if macro in ("BR", "BI", "IB", "IR", "RB", "RI"):
            text = "".join(args)
        else:
            text = " ".join(args)
        if text:
            self.current.append(text)
        if macro in ("SH", "SS", "Sh", "Ss"):
            self.flush()


def roff_to_text(source: str) -> str:
    """Prose of a roff page: paragraphs joined by newlines, whitespace normalized."""
    reader = _RoffReader()
    for raw in source.splitlines():
        reader.line(raw)
    reader.flush()
    return "\n".join(reader.paragraphs)
