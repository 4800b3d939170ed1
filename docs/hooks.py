"""MkDocs hook: the figures beside the results files join the site next to the pages that include
those files.

The results pages (docs/results/) include ``benchmarks/results/*.md`` and ``report/*.md`` as they
are written by the benchmarks and the report command (pymdownx.snippets), so their image links
(``train.png``, ``confusion.png``) are relative to those folders. The PNGs are added to the site
under ``results/``, where those links resolve from the including pages; nothing is copied into
docs/. Two figures of one name in the two folders would be ambiguous and fail the build.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

FIGURE_FOLDERS = ("benchmarks/results", "report")


def on_files(files: Files, config) -> Files:
    root = Path(config["config_file_path"]).resolve().parent
    added: dict[str, Path] = {}
    for folder in FIGURE_FOLDERS:
        for png in sorted((root / folder).glob("*.png")):
            uri = f"results/{png.name}"
            if uri in added or files.get_file_from_path(uri) is not None:
                raise ValueError(f"docs hook: {png.name} is in two figure folders ({added.get(uri)} and {png})")
            added[uri] = png
            files.append(File.generated(config, uri, abs_src_path=str(png)))
    return files
