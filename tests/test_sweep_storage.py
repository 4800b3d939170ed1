"""Storage and locking of local sweeps, unit by unit: where a study and its results file live,
how a storage URL is shown and resolved, which lock serialises starting trials (and that the
file lock excludes another process), and how a dead worker's trial is found and re-queued."""

import os
import subprocess
import sys
import tempfile

import pytest

optuna = pytest.importorskip("optuna")

from tinygrad_free.sweep import locks, recovery, storage  # noqa: E402


def test_default_storage_is_a_sqlite_file_beside_the_sweep_file(tmp_path):
    sweep = tmp_path / "sweeps" / "assignment.yaml"
    assert storage.default_storage(sweep, "assignment") == f"sqlite:///{tmp_path / 'sweeps' / 'assignment.db'}"
    assert storage.default_storage(None, "s") == f"sqlite:///{os.getcwd()}/s.db"


def test_results_file_sits_beside_the_study(tmp_path):
    db = tmp_path / "a.db"
    assert storage.default_results(f"sqlite:///{db}", "a") == str(tmp_path / "a.jsonl")
    assert storage.default_results(f"sqlite:///{db}", "other") == str(tmp_path / "a-other.jsonl")
    # A server database has no folder: the results go beside the sweep file.
    assert storage.default_results("postgresql://u@h/db", "s", tmp_path / "s.yaml") == str(tmp_path / "s.jsonl")


def test_display_url_hides_the_password_only():
    pytest.importorskip("sqlalchemy")
    assert storage.display_url("postgresql://user:secret@host:5432/db") == "postgresql://user:***@host:5432/db"
    assert storage.display_url("sqlite:///x/y.db") == "sqlite:///x/y.db"
    assert "secret" not in storage.display_url("postgresql+psycopg://user:secret@host/db")


def test_sqlite_urls_resolve_unchanged_and_postgres_is_read_as_postgresql(monkeypatch):
    assert storage.resolve_storage_url("sqlite:///x.db") == "sqlite:///x.db"
    pytest.importorskip("sqlalchemy")
    monkeypatch.setattr(storage, "_dialect_dbapi_ok", lambda name: name == "postgresql+psycopg")
    assert storage.resolve_storage_url("postgres://u@h/db").split("://")[0] in ("postgresql", "postgresql+psycopg")
    assert storage.resolve_storage_url("postgres://u@h/db").endswith("://u@h/db")


def test_no_postgres_driver_is_an_import_error_naming_the_extra(monkeypatch):
    pytest.importorskip("sqlalchemy")
    monkeypatch.setattr(storage, "_dialect_dbapi_ok", lambda name: False)
    with pytest.raises(
        ImportError,
        match=r"storage postgresql://u:\*\*\*@h/db needs a PostgreSQL driver .* "
        r"pip install 'tinygrad_free\[postgres\]'",
    ):
        storage.resolve_storage_url("postgresql://u:pw@h/db")


def test_open_storage_creates_the_sqlite_folder_and_keeps_heartbeats(tmp_path):
    url = f"sqlite:///{tmp_path / 'new' / 'study.db'}"
    store = storage.open_storage(url)
    assert (tmp_path / "new").is_dir()
    assert store.get_heartbeat_interval() == storage._HEARTBEAT_INTERVAL
    optuna.create_study(storage=store, study_name="s")
    assert [s.study_name for s in storage.open_storage(url).get_all_studies()] == ["s"]


def test_lock_file_is_hidden_beside_a_sqlite_study_and_hashed_in_tmp_otherwise(tmp_path):
    assert locks._lock_path(f"sqlite:///{tmp_path / 'a.db'}", "s") == str(tmp_path / ".a.db.s.lock")
    other = locks._lock_path("sqlite:///:memory:", "s")
    assert os.path.dirname(other) == tempfile.gettempdir() and other.endswith(".lock")
    assert locks._lock_path("sqlite:///:memory:", "t") != other


@pytest.mark.parametrize(
    "url, kind",
    [
        ("sqlite:///x.db", locks._FileLock),
        ("postgresql://u@h/db", locks._PostgresLock),
        ("postgresql+psycopg2://u@h/db", locks._PostgresLock),
        ("postgres://u@h/db", locks._PostgresLock),
    ],
)
def test_the_study_lock_is_server_wide_for_postgresql_and_a_file_otherwise(url, kind):
    assert type(locks.study_lock(url, "s")) is kind


def test_postgres_lock_key_is_a_stable_signed_64_bit_number_per_study():
    a, b = locks._PostgresLock("postgresql://h/db", "s"), locks._PostgresLock("postgresql://other/db", "s")
    assert a.key == b.key and -(2**63) <= a.key < 2**63
    assert locks._PostgresLock("postgresql://h/db", "t").key != a.key
    a.release()  # never acquired: nothing to release, no connection opened
    assert a.conn is None and not a.held


_TRY_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("busy")
else:
    print("free")
"""


@pytest.mark.skipif(locks.fcntl is None, reason="no POSIX flock")
def test_file_lock_excludes_another_process_until_released(tmp_path):
    path = str(tmp_path / "sub" / ".study.lock")
    lock = locks._FileLock(path)

    def other_process_sees():
        return subprocess.run(
            [sys.executable, "-c", _TRY_LOCK, path], capture_output=True, text=True, check=True
        ).stdout.strip()

    lock.acquire()
    lock.acquire()  # re-entrant within the holder: no deadlock
    assert other_process_sees() == "busy"
    lock.release()
    lock.release()  # idempotent: the trial may have released it already
    assert other_process_sees() == "free"


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_pid_check_tells_live_from_dead_processes():
    assert recovery._pid_alive(os.getpid())
    assert not recovery._pid_alive(_dead_pid())


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_dead_workers_running_trial_is_failed_and_its_parameters_requeued(tmp_path):
    store = storage.open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    study = optuna.create_study(storage=store, study_name="r", direction="maximize")
    me = recovery.machine_id()
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    dead.set_user_attr("machine", me)
    dead.set_user_attr("pid", _dead_pid())
    alive = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    alive.set_user_attr("machine", me)
    alive.set_user_attr("pid", os.getppid())  # a live process: its trial is left alone
    elsewhere = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    elsewhere.set_user_attr("machine", "another-host:0")
    elsewhere.set_user_attr("pid", _dead_pid())  # a pid on another machine says nothing here
    assert recovery.count_trials(study) == (0, 3)
    assert recovery.recover_dead_trials(study) == 1
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    T = optuna.trial.TrialState
    assert states[dead.number] == T.FAIL
    assert states[alive.number] == states[elsewhere.number] == T.RUNNING
    waiting = study.get_trials(deepcopy=False, states=(T.WAITING,))
    assert [t.params for t in waiting] == [{"x": dead.params["x"]}]
    assert recovery.fail_dead_trials(study) == 0  # already failed: not counted twice
