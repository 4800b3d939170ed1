"""report.md: one Markdown file per section, assembled in :data:`SECTIONS` order."""

from __future__ import annotations

import os

from ..fileio import atomic_write_text

#: Order of the sections in report.md.
SECTIONS = ("samples", "sweep", "confusion", "losses", "mnist", "architectures")


def write_section(out_dir, key, markdown):
    """Store one section of report.md (``sections/<n>-<key>.md``) and rebuild the report."""
    if key not in SECTIONS:
        raise ValueError(f"unknown section {key!r}; choose one of {', '.join(SECTIONS)}")
    n = SECTIONS.index(key) + 1
    atomic_write_text(os.path.join(out_dir, "sections", f"{n}-{key}.md"), markdown.rstrip() + "\n")
    return assemble_report(out_dir)


def assemble_report(out_dir, title="Feedforward networks on Fashion-MNIST: experiments"):
    """Concatenate the sections present in ``out_dir/sections`` into ``out_dir/report.md``."""
    parts = [f"# {title}\n"]
    for n, key in enumerate(SECTIONS, 1):
        p = os.path.join(out_dir, "sections", f"{n}-{key}.md")
        if os.path.exists(p):
            with open(p) as f:
                parts.append(f.read())
    path = os.path.join(out_dir, "report.md")
    atomic_write_text(path, "\n".join(parts))
    return path
