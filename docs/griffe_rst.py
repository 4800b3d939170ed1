"""A griffe extension for the API pages: the reStructuredText habits of the docstrings, read as
Markdown.

The docstrings are numpydoc, written to read well in ``help()``; a few rST constructs in them
would show literally on the site. Before mkdocstrings renders a docstring this rewrites:

* roles, ``:class:`~a.b.C` `` (also ``:func:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``),
  as code, ``C``;
* a paragraph ending in ``::`` (an rST literal block follows) as ending in ``:``, a lone ``::``
  as nothing; the indented block after it is a Markdown code block already;
* simple tables (rows between ``=====  =====`` rules) as Markdown tables.

The docstrings themselves are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):`(~?)([^`]+)`")
RULE = re.compile(r"^(\s*)(=+)(\s+=+)+\s*$")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _columns(rule: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]


def _cells(line: str, columns: list[tuple[int, int]]) -> list[str]:
    cells = []
    for i, (start, _end) in enumerate(columns):
        stop = columns[i + 1][0] if i + 1 < len(columns) else len(line)
        cells.append(line[start:stop].strip())
    return cells


def _table(lines: list[str], indent: str, columns: list[tuple[int, int]]) -> list[str]:
    """A simple table's lines (rules included) as a Markdown table. A row whose first cell is
    empty continues the row above it; the rows before the second rule are the header."""
    rules = [i for i, line in enumerate(lines) if RULE.match(line)]
    header_end = rules[1] if len(rules) == 3 else None
    rows: list[list[str]] = []
    header: list[str] | None = None
    for i, line in enumerate(lines):
        if i in rules:
            if i == header_end:
                header, rows = rows[0] if rows else None, []
            continue
        cells = _cells(line, columns)
        if rows and not cells[0]:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    header = header or [""] * len(columns)
    out = [indent + "| " + " | ".join(header) + " |", indent + "|" + "---|" * len(columns)]
    out += [indent + "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def rst_to_markdown(text: str) -> str:
    text = ROLE.sub(_role, text)
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        rule = RULE.match(line)
        if rule:
            indent, columns = rule.group(1), _columns(line)
            end, seen = i + 1, 1
            while end < len(lines):
                if RULE.match(lines[end]):
                    seen += 1
                    # the closing rule: the third, or the second with a blank line after it (no header)
                    if seen == 3 or end + 1 == len(lines) or not lines[end + 1].strip():
                        break
                end += 1
            out += _table(lines[i : end + 1], indent, columns)
            i = end + 1
            continue
        stripped = line.rstrip()
        if stripped.endswith("::") and not stripped.endswith(":::"):
            line = stripped[:-2].rstrip()
            line = line + ":" if line.strip() else ""
        out.append(line)
        i += 1
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
