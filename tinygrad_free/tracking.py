"""Experiment tracking with wandb, made safe for machines without an account or a network:
credentials are detected up front, so nothing ever waits at a login prompt."""

import os

#: The modes of a wandb run: logged to the server, kept on disk for a later ``wandb sync``, or none.
WANDB_MODES = ("online", "offline", "disabled")


def wandb_logged_in():
    """True when wandb has credentials (``WANDB_API_KEY`` or an ``api.wandb.ai`` entry in ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    try:
        with open(netrc) as f:
            return "api.wandb.ai" in f.read()
    except OSError:
        return False


def default_wandb_mode():
    """``online`` with credentials, else ``offline`` (``WANDB_MODE`` wins when set)."""
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in WANDB_MODES:
        return env
    return "online" if wandb_logged_in() else "offline"


def start_wandb_run(mode, **kwargs):
    """``wandb.init(mode=mode, ...)``, or None when disabled or wandb is missing; never prompts."""
    if mode == "disabled":
        return None
    try:
        import wandb
    except ImportError:
        return None
    return wandb.init(mode=mode, settings=wandb.Settings(silent=True), **kwargs)


def resolve_mode(requested=None):
    """The wandb mode to use: ``requested`` if given, else :func:`default_wandb_mode`;
    ``online`` without credentials becomes ``offline`` (with a note saying how to sync later)."""
    mode = requested or default_wandb_mode()
    if mode == "online" and not wandb_logged_in():
        print("wandb: no credentials found (WANDB_API_KEY or `wandb login`), logging offline instead")
        mode = "offline"
    if mode == "offline":
        print("wandb: logging offline; upload later with `wandb sync wandb/offline-run-*`")
    return mode
