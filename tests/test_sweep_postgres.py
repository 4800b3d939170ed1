"""Sweeps shared through a real PostgreSQL server: two sweep processes on one study, one killed
mid-trial and restarted, the export of every trial; and the message when no driver is installed.

The server is PostgreSQL's own ``initdb`` + ``pg_ctl`` in a temporary folder (as the ``postgres``
user when the tests run as root, since PostgreSQL refuses to run as root), on a free port of
127.0.0.1; it is stopped and its folder removed at the end, whether the tests passed or not.
Without the server binaries the server tests are skipped, with the reason in pytest's summary.
"""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from tinygrad_free import sweep as S  # noqa: E402
from tinygrad_free.sweep import local, locks  # noqa: E402
from tinygrad_free.sweep.recovery import machine_id  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

N_TRIALS = 6
SWEEP = """
name: shared
method: random
metric: {name: val_accuracy, goal: maximize}
parameters:
  epochs: {value: 1}
  num_layers: {value: 1}
  hidden_size: {value: 16}
  batch_size: {value: 64}
  activation: {values: [tanh, relu]}
  optimizer: {values: [adam, nadam, rmsprop]}
  learning_rate: {values: [0.001, 0.003]}
"""


# ---------------------------------------------------------------------------------------------
# A throw-away PostgreSQL server
# ---------------------------------------------------------------------------------------------


def _server_bin():
    """The folder with initdb and pg_ctl: on PATH, else Debian/Ubuntu's /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    folders = [os.path.dirname(on_path)] if on_path else []
    folders += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda f: [int(x) for x in Path(f).parent.name.split(".") if x.isdigit()],
        reverse=True,
    )
    for folder in folders:
        if all(os.access(os.path.join(folder, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres", "createdb")):
            return folder
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """initdb + pg_ctl in a temporary folder; :meth:`stop` stops the server and removes the folder."""

    def __init__(self, bindir):
        self.bindir = bindir
        self.folder = tempfile.mkdtemp(prefix="tinygrad_free-pg-")
        self.data, self.log = os.path.join(self.folder, "data"), os.path.join(self.folder, "server.log")
        self.as_user = []
        self.started = False
        if os.geteuid() == 0:  # the server will not run as root
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.folder, 0o700)
        self.port = None

    def run(self, *cmd):
        out = subprocess.run(
            self.as_user + [os.path.join(self.bindir, cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=120
        )
        if out.returncode != 0:
            log = Path(self.log).read_text() if os.path.exists(self.log) else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}{log}")
        return out

    def start(self):
        self.run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        for attempt in range(3):  # another process may take the free port before the server binds it
            self.port = _free_port()
            try:
                self.run(
                    "pg_ctl",
                    "-D",
                    self.data,
                    "-l",
                    self.log,
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start",
                )
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self.started = True
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "sweeps")
        return f"postgresql://postgres@127.0.0.1:{self.port}/sweeps"

    def stop(self):
        try:
            if self.started or os.path.exists(os.path.join(self.data, "postmaster.pid")):
                self.run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url():
    bindir = _server_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin"
        )
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root and there is no runuser to run the server as 'postgres'")
    server = PostgresServer(bindir)
    try:
        yield server.start()
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def lines(path):
    return (
        [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        if os.path.exists(path)
        else []
    )


def sweep_process(sweep_file, url, results, log):
    """scripts/sweep.py as another machine would run it, with one BLAS thread (two share 2 cores)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "sweep.py"),
        str(sweep_file),
        "--storage",
        url,
        "--n_trials",
        str(N_TRIALS),
        "--limit",
        "300",
        "--wandb_mode",
        "disabled",
        "--results",
        str(results),
    ]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))


def study_trials(storage, name="shared"):
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []


def wait_for_running_trial(storage, pids, n_params, timeout=240):
    """A trial one of the processes ``pids`` is training, as ``(number, pid)``: claimed (user
    attribute ``pid``) with all ``n_params`` parameters sampled; a process's first trial then
    loads the data for seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        trials = study_trials(storage)
        for t in trials:
            if t.state == TrialState.RUNNING and t.user_attrs.get("pid") in pids and len(t.params) == n_params:
                return t.number, t.user_attrs["pid"]
        if sum(t.state == TrialState.COMPLETE for t in trials) >= N_TRIALS:
            break
        time.sleep(0.05)
    raise AssertionError(f"processes {pids} trained no trial before the study was done or {timeout}s passed")


# ---------------------------------------------------------------------------------------------
# Two sweep processes on one PostgreSQL study
# ---------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_two_sweeps_share_a_postgres_study_and_a_killed_worker_is_rerun(postgres_url, tmp_path, capsys):
    import sweep as cli

    sweep_file = tmp_path / "shared.yaml"
    sweep_file.write_text(SWEEP)
    # Separate results files, as on two machines; the export gathers them from the study.
    results = {"a": tmp_path / "a.jsonl", "b": tmp_path / "b.jsonl"}
    logs = {k: open(tmp_path / f"{k}.log", "w") for k in ("a", "b", "restarted")}
    storage = S.open_storage(postgres_url)  # to watch the study, as the processes fill it
    procs = []
    try:
        procs = [sweep_process(sweep_file, postgres_url, results[k], logs[k]) for k in ("a", "b")]
        # Kill whichever process is first seen training a trial.
        killed, victim_pid = wait_for_running_trial(
            storage, {p.pid for p in procs}, len(S.load_sweep(sweep_file).varied)
        )
        victim = next(k for k, p in zip("ab", procs) if p.pid == victim_pid)
        os.kill(victim_pid, signal.SIGKILL)
        assert procs["ab".index(victim)].wait(timeout=30) == -signal.SIGKILL
        # The same command again, on the same "machine".
        procs.append(sweep_process(sweep_file, postgres_url, results[victim], logs["restarted"]))
        survivors = [p for p in procs if p.pid != victim_pid]
        for p in survivors:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs.values():
            f.close()
    output = {k: (tmp_path / f"{k}.log").read_text() for k in logs}
    assert [p.returncode for p in survivors] == [0, 0], output

    trials = {t.number: t for t in study_trials(storage)}
    states = [t.state for t in trials.values()]
    assert states.count(TrialState.COMPLETE) == N_TRIALS, output
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    # The killed worker's trial was failed and its parameters re-run as another trial.
    assert trials[killed].state == TrialState.FAIL and trials[killed].user_attrs["pid"] == victim_pid
    rerun = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(rerun) == 1 and rerun[0].state == TrialState.COMPLETE
    assert rerun[0].params == trials[killed].params
    assert rerun[0].user_attrs["pid"] in {p.pid for p in survivors}
    assert states.count(TrialState.FAIL) == 1

    # Every finished trial is recorded exactly once, by the process that ran it.
    recorded = lines(results["a"]) + lines(results["b"])
    complete = sorted(n for n, t in trials.items() if t.state == TrialState.COMPLETE)
    assert sorted(r["trial"] for r in recorded) == complete
    for r in recorded:
        assert r["status"] == "completed" and r["pid"] == trials[r["trial"]].user_attrs["pid"]
        assert r["value"] == r["val_accuracy"] == trials[r["trial"]].value
        assert len(r["history"]["val_accuracy"]) == 1 and r["limit"] == 300
    assert killed not in {r["trial"] for r in recorded}

    # --export writes the same lines, from the study alone.
    exported = tmp_path / "all.jsonl"
    assert cli.main([str(sweep_file), "--storage", postgres_url, "--export", str(exported)]) == 0
    out = capsys.readouterr().out
    assert f"exported {N_TRIALS} trials of study 'shared'" in out and "1 unfinished or killed trials left out" in out
    by_trial = {r["trial"]: r for r in recorded}
    got = lines(exported)
    assert [r["trial"] for r in got] == complete
    assert all(r == by_trial[r["trial"]] for r in got)
    assert S.best_record(S.read_results(exported)) == S.best_record(sorted(recorded, key=lambda r: r["trial"]))


# open_storage silences Optuna's "experimental" warnings with warnings.catch_warnings, which is
# not thread-safe: with threads racing, one may restore the filters while another is inside.
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_machines_opening_an_empty_database_at_once_all_get_the_storage(postgres_url):
    # Optuna creates its tables on open, without IF NOT EXISTS: the losers of that race retry.
    import threading

    url = postgres_url.rsplit("/", 1)[0] + "/postgres"  # the server's own database, still empty
    barrier, out = threading.Barrier(4), []

    def join():
        barrier.wait()
        try:
            out.append(type(S.open_storage(url)).__name__)
        except Exception as e:  # noqa: BLE001
            out.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=join) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert out == ["RDBStorage"] * 4


def test_starting_trials_is_serialised_by_the_server_for_workers_of_any_machine(postgres_url):
    # Two workers' locks on one study (as on two machines, which share no lock file).
    import threading

    first, second = (locks.study_lock(postgres_url, "locked") for _ in range(2))
    other_study = locks.study_lock(postgres_url, "another")
    assert isinstance(first, locks._PostgresLock)
    first.acquire()
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (second.acquire(), got.set()))
    waiter.start()
    assert not got.wait(0.5)  # blocked while the first worker counts and creates
    other_study.acquire()  # another study's workers are not held up
    other_study.release()
    first.release()
    assert got.wait(10)
    waiter.join()
    second.release()
    first.acquire()  # free again, and re-acquirable
    first.release()


# ---------------------------------------------------------------------------------------------
# Drivers (no server needed)
# ---------------------------------------------------------------------------------------------


def _default_driver():
    from sqlalchemy.engine import make_url

    return make_url("postgresql://u@h/db").get_dialect().driver


def test_missing_postgres_driver_names_the_extra_before_the_study_starts(monkeypatch, tmp_path, capsys):
    import sweep as cli

    for module in ("psycopg", "psycopg2"):
        monkeypatch.setitem(sys.modules, module, None)  # `import psycopg` raises ImportError
    sweep_file = tmp_path / "shared.yaml"
    sweep_file.write_text(SWEEP)
    url = "postgresql://sweeper:s3cret@db.example.org:5432/sweeps"
    with pytest.raises(ImportError) as err:
        S.run_local_sweep(S.load_sweep(sweep_file), storage=url, results=str(tmp_path / "r.jsonl"), n_trials=1)
    message = str(err.value)
    assert message == (
        "storage postgresql://sweeper:***@db.example.org:5432/sweeps needs a PostgreSQL driver "
        f"({' or '.join(dict.fromkeys([_default_driver(), 'psycopg', 'psycopg2']))}), and none is "
        "installed: pip install 'tinygrad_free[postgres]'"
    )
    assert capsys.readouterr().out == "" and list(tmp_path.iterdir()) == [sweep_file]  # nothing started
    with pytest.raises(SystemExit):
        cli.main([str(sweep_file), "--storage", url, "--wandb_mode", "disabled"])
    err_out = capsys.readouterr().err
    assert "needs a PostgreSQL driver" in err_out and "pip install 'tinygrad_free[postgres]'" in err_out
    assert "s3cret" not in err_out


def test_a_named_driver_that_is_missing_names_its_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    with pytest.raises(
        ImportError,
        match=r"names the PostgreSQL driver 'psycopg2', which is not installed: "
        r"pip install 'psycopg2-binary', or write postgresql:// and "
        r"pip install 'tinygrad_free\[postgres\]'",
    ):
        S.resolve_storage_url("postgresql+psycopg2://u@h/db")


def test_plain_postgresql_url_uses_whichever_driver_is_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg2", types.ModuleType("psycopg2"))  # only psycopg2 "installed"
    expected = "postgresql://u@h/db" if _default_driver() == "psycopg2" else "postgresql+psycopg2://u@h/db"
    assert S.resolve_storage_url("postgresql://u@h/db") == expected
    assert S.resolve_storage_url("postgres://u@h/db") == expected  # Heroku's spelling
    assert S.resolve_storage_url("sqlite:///x.db") == "sqlite:///x.db"


def test_postgres_extra_installs_the_driver_sqlalchemy_needs():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = cfg["options.extras_require"]
    for extra in ("postgres", "test"):
        reqs = [r.strip() for r in extras[extra].splitlines() if r.strip()]
        assert "psycopg[binary]>=3.1" in reqs and "SQLAlchemy>=2.0" in reqs, (extra, reqs)
    import psycopg  # noqa: F401  # the test extra installs it: the server tests above need it


def test_machines_joining_a_server_study_sample_different_streams():
    # Worker 0 of two machines starting on the same study: same seed, index and study size.
    same = [local._sampler_seed(0, 0, 0, local._process_salt("sqlite:///s.db")) for _ in range(2)]
    assert same[0] == same[1] == local._sampler_seed(0, 0, 0)  # one machine: --seed reproduces
    url = "postgresql://u@h/db"
    assert local._process_salt(url) == f"{machine_id()}:{os.getpid()}"
    assert local._sampler_seed(0, 0, 0, "hostA:1234") != local._sampler_seed(0, 0, 0, "hostB:1234")
    assert local._sampler_seed(0, 0, 0, "hostA:1234") != local._sampler_seed(0, 0, 0, "hostA:1235")
