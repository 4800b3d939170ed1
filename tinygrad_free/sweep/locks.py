"""The lock that serialises "count the study's trials, then start one": a file lock between the
processes of one machine, a PostgreSQL advisory lock between machines."""

import os
import tempfile

from .storage import resolve_storage_url

try:  # POSIX advisory locks
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def _lock_path(storage_url, study_name):
    if storage_url.startswith("sqlite:///"):
        path = storage_url[len("sqlite:///") :]
        if path and path != ":memory:":
            folder, base = os.path.split(os.path.abspath(path))
            return os.path.join(folder, f".{base}.{study_name}.lock")
    import hashlib

    digest = hashlib.sha1(f"{storage_url}|{study_name}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"tinygrad_free-sweep-{digest}.lock")


class _FileLock:
    """An exclusive ``flock`` that can be released from inside the trial (release is idempotent).

    It serialises "count trials, then create one" between the processes of one machine, so N
    workers never start more trials than the target. A PostgreSQL study takes a
    :class:`_PostgresLock` instead, which holds across machines.
    """

    def __init__(self, path):
        self.path, self.fd = path, None

    def acquire(self):
        if self.fd is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is not None:
                fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class _PostgresLock:
    """:class:`_FileLock` for a study on a PostgreSQL server: ``pg_advisory_lock`` on a session of its own.

    The lock lives in the server, so "count trials, then create one" is serialised between the
    workers of every machine and the study ends with exactly ``n_trials`` finished trials, not up
    to one more per machine. The server drops a session-level lock when its session ends, so a
    killed worker never leaves it held. The session is in autocommit: between trials it is idle,
    not idle in a transaction. The key is the first 8 bytes of SHA-1 of the study name.
    """

    def __init__(self, url, study_name):
        import hashlib

        digest = hashlib.sha1(f"tinygrad_free sweep {study_name}".encode()).digest()
        self.url, self.key = url, int.from_bytes(digest[:8], "big", signed=True)
        self.conn, self.held = None, False

    def _lock(self):
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        if self.conn is None:
            engine = create_engine(resolve_storage_url(self.url), poolclass=NullPool)
            self.conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self.conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self.key})

    def acquire(self):
        if self.held:
            return
        from sqlalchemy.exc import DBAPIError

        try:
            self._lock()
        except DBAPIError as e:
            if not e.connection_invalidated:
                raise
            self.conn = None  # the server dropped the idle session (restart, timeout): open a new one
            self._lock()
        self.held = True

    def release(self):
        if self.held:
            self.held = False
            from sqlalchemy import text

            try:
                self.conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            except Exception:  # a lost session released its lock with it  # noqa: BLE001
                self.conn = None


def study_lock(storage_url, study_name):
    """The lock that serialises starting trials of one study: server-wide for PostgreSQL, else per machine."""
    if storage_url.split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres"):
        return _PostgresLock(storage_url, study_name)
    return _FileLock(_lock_path(storage_url, study_name))
