"""Where a study lives: SQLite beside the sweep file, or a PostgreSQL server shared by machines
(the driver resolved and a missing one named), opened with heartbeats so a dead worker's trial
is retried."""

import os
import time
import warnings
from pathlib import Path


def default_storage(sweep_path, study_name):
    """``sqlite:///<folder of the sweep file>/<study_name>.db``."""
    folder = Path(sweep_path).resolve().parent if sweep_path else Path.cwd()
    return f"sqlite:///{folder / (study_name + '.db')}"


def default_results(storage, study_name, sweep_path=None):
    """Results file next to the study: ``X.jsonl`` beside a SQLite ``X.db``."""
    if storage.startswith("sqlite:///") and storage[len("sqlite:///") :] not in ("", ":memory:"):
        db = Path(storage[len("sqlite:///") :])
        return str(db.with_name(f"{db.stem}.jsonl" if db.stem == study_name else f"{db.stem}-{study_name}.jsonl"))
    folder = Path(sweep_path).resolve().parent if sweep_path else Path.cwd()
    return str(folder / f"{study_name}.jsonl")


_HEARTBEAT_INTERVAL = 30  # seconds; a trial silent for _GRACE seconds belongs to a dead process


_GRACE = 90


_MAX_RETRY = 2


def retry_callback():
    """Optuna's callback that re-queues a failed or stale trial's parameters as a WAITING trial (at
    most ``_MAX_RETRY`` times), the one the storage is opened with (:func:`open_storage`)."""
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # marked experimental
        return cls(max_retry=_MAX_RETRY)


#: What a machine installs to reach a PostgreSQL study (setup.cfg's ``postgres`` extra: psycopg 3).
POSTGRES_INSTALL = "pip install 'tinygrad_free[postgres]'"


# SQLAlchemy dialects for PostgreSQL with the module each imports, in the order tried for a plain
# ``postgresql://`` URL after SQLAlchemy's own default (psycopg2 up to SQLAlchemy 2.0, psycopg from 2.1).
_POSTGRES_DRIVERS = ("psycopg", "psycopg2")


_POSTGRES_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary"}


def display_url(url):
    """``url`` with its password replaced by ``***``, for messages and logs."""
    if "://" not in url or url.startswith("sqlite"):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses; show the scheme only  # noqa: BLE001
        return url.split("://", 1)[0] + "://..."


def _dialect_dbapi_ok(drivername):
    """True when SQLAlchemy has the dialect ``drivername`` and its DBAPI module imports."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError

    try:
        dialect = make_url(f"{drivername}://").get_dialect()
        importer = getattr(dialect, "import_dbapi", None) or dialect.dbapi  # SQLAlchemy 2.x / 1.4
        importer()
    except (ImportError, NoSuchModuleError):  # no driver module / no such dialect in this SQLAlchemy
        return False
    return True


def resolve_storage_url(url):
    """The URL SQLAlchemy opens for the storage ``url``, checking its database driver first.

    SQLite URLs come back unchanged. ``postgresql://user@host/db`` names no driver, and
    SQLAlchemy's default for it changed from psycopg2 (up to 2.0) to psycopg 3 (2.1), so the URL is
    pointed at whichever driver imports: SQLAlchemy's default first, then ``psycopg``, then
    ``psycopg2``; ``postgres://`` (Heroku's spelling) is read as ``postgresql://``. A URL naming
    its driver (``postgresql+psycopg2://``) is used as typed.

    Raises
    ------
    ImportError
        When no PostgreSQL driver imports, naming the URL (password hidden) and the extra that
        installs one, before any study is touched (Optuna would otherwise stop in a traceback).
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "postgres":
        scheme, url = "postgresql", "postgresql" + url[len("postgres") :]
    if scheme.split("+", 1)[0] != "postgresql":
        return url
    if scheme == "postgresql":
        from sqlalchemy.engine import make_url

        default = make_url(url).get_dialect().driver
        candidates = [default] + [d for d in _POSTGRES_DRIVERS if d != default]
    else:
        candidates = [scheme.split("+", 1)[1]]
    for driver in candidates:
        if _dialect_dbapi_ok(f"postgresql+{driver}"):
            return (
                url
                if scheme != "postgresql" or driver == candidates[0]
                else f"postgresql+{driver}" + url[len(scheme) :]
            )
    if scheme != "postgresql":
        package = _POSTGRES_PACKAGES.get(candidates[0], candidates[0])
        raise ImportError(
            f"storage {display_url(url)} names the PostgreSQL driver {candidates[0]!r}, which is "
            f"not installed: pip install '{package}', or write postgresql:// and "
            f"{POSTGRES_INSTALL}"
        )
    raise ImportError(
        f"storage {display_url(url)} needs a PostgreSQL driver ({' or '.join(candidates)}), "
        f"and none is installed: {POSTGRES_INSTALL}"
    )


def open_storage(url):
    """An Optuna storage for ``url`` with heartbeats, so trials of a dead process are retried.

    SQLite gets a long busy timeout because several worker processes write to one file;
    PostgreSQL URLs go through :func:`resolve_storage_url` (driver choice, clear missing-driver error)
    and get ``pool_pre_ping``, so a connection the server dropped while a long trial trained
    is replaced instead of failing the trial's ``tell``.
    """
    import optuna

    url = resolve_storage_url(url)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None
    if url.startswith("postgresql"):
        engine_kwargs = {"pool_pre_ping": True}
    params = {"heartbeat_interval": _HEARTBEAT_INTERVAL, "grace_period": _GRACE}
    import inspect

    names = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    key = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in names else "failed_trial_callback"
    params[key] = retry_callback()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeat options are marked experimental in some versions
        if url.startswith("sqlite"):
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **params)
        return _rdb_storage_racing_others(url, engine_kwargs, params)


def _rdb_storage_racing_others(url, engine_kwargs, params, attempts=5):
    """``RDBStorage(url)``, retried while other machines create the same tables.

    Optuna creates its tables and its version row when a storage opens, without ``IF NOT EXISTS``;
    on an empty server database, machines joining at once collide there (PostgreSQL: duplicate
    table or key). The loser retries and finds the winner's tables. SQLite processes take a file
    lock instead (:func:`tinygrad_free.sweep.locks.study_lock`), which the machines of a server database cannot share.
    """
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **params)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
