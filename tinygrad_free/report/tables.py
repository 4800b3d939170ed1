"""Tables: as Markdown, and drawn as a PNG."""

from __future__ import annotations

from .figures import new_figure, save_figure


def markdown_table(columns, rows):
    """A GitHub-flavoured Markdown table."""

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def plot_table(columns, rows, path, title=None, col_widths=None):
    """A table rendered as a PNG (for wandb and the report)."""
    cells = [["" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)) for v in row] for row in rows]
    chars = [max([len(str(c))] + [len(r[i]) for r in cells]) + 2 for i, c in enumerate(columns)]
    width = max(6.0, 0.085 * sum(chars))
    if col_widths is None:  # each column as wide as its longest text
        col_widths = [n / sum(chars) for n in chars]
    fig = new_figure((width, 0.32 * (len(rows) + 1) + (0.5 if title else 0.1)))
    ax = fig.add_subplot()
    ax.set_axis_off()
    table = ax.table(
        cellText=cells or [[""] * len(columns)],
        colLabels=list(columns),
        loc="center",
        cellLoc="left",
        colLoc="left",
        colWidths=col_widths,
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.4)
    for (r, col), c in table.get_celld().items():
        c.PAD = 0.5 / chars[col]  # matplotlib pads by a share of the cell width; keep it about half a character
        if r == 0:
            c.set_text_props(weight="bold")
            c.set_facecolor("#e8e8e8")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)
