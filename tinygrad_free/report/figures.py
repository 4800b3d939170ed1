"""Figure files: a matplotlib ``Figure`` on the Agg renderer (pyplot's global state left alone),
written atomically as PNG, and logged to wandb when a run is active."""

from __future__ import annotations

import os

from ..fileio import atomic_open


def new_figure(figsize):
    """A matplotlib ``Figure`` of ``figsize`` inches (constrained layout) on its own Agg canvas, so
    drawing it never touches pyplot's global state or the user's backend; write it with :func:`save_figure`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path, dpi=110):
    """Render ``fig`` to ``path`` (PNG) atomically, log it to wandb if a run is active; returns the path."""
    path = os.fspath(path)
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
    log_to_wandb({os.path.splitext(os.path.basename(path))[0]: path})
    return path


def log_to_wandb(images=None, tables=None):
    """Log PNGs (``{key: path}``) and tables (``{key: (columns, rows)}``) to the active wandb run, if any."""
    try:
        import wandb
    except ImportError:
        return False
    if getattr(wandb, "run", None) is None:
        return False
    payload = {k: wandb.Image(p) for k, p in (images or {}).items()}
    payload.update(
        {k: wandb.Table(columns=list(c), data=[list(r) for r in rows]) for k, (c, rows) in (tables or {}).items()}
    )
    if payload:
        wandb.log(payload)
    return True
