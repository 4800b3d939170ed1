"""Trials left RUNNING by dead workers, found (by pid on this machine, by heartbeat on any) and
re-queued, so a study still ends with exactly ``n_trials`` finished trials."""

import contextlib
import os
import socket

from .storage import retry_callback


def machine_id():
    """This machine as trials and results lines name it: ``host:boot`` (the first 8 characters of the
    kernel's boot id, so a rebooted machine, whose old pids mean nothing, is another one)."""
    boot = ""
    with contextlib.suppress(OSError):
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
    return f"{socket.gethostname()}:{boot}"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie is dead, just not reaped yet
                return False
    return True


def fail_dead_trials(study):
    """Fail (and re-queue) RUNNING trials whose process on this machine no longer exists.

    Heartbeats catch dead processes on any machine, but only after the grace period; a sweep
    restarted on the same machine right after being killed should not wait for that.

    Returns
    -------
    int
        How many trials were failed.
    """
    from optuna.trial import TrialState

    me, n = machine_id(), 0
    retry = retry_callback()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("machine") != me or t.user_attrs.get("pid") in (None, os.getpid()):
            continue
        if _pid_alive(int(t.user_attrs["pid"])):
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except Exception:  # another process failed it first  # noqa: BLE001
            continue
        retry(study, study._storage.get_trial(t._trial_id))
        n += 1
    return n


def recover_dead_trials(study):
    """Fail and re-queue the RUNNING trials of dead workers, on this machine or any other.

    A worker killed mid-trial (SIGKILL, power loss, a lost machine) leaves its trial RUNNING in
    the shared database, where it would count towards ``n_trials`` forever. Every worker calls
    this before it counts the study's trials, and it uses two signals:

    * same machine: the trial's ``machine``/``pid`` user attributes name a process that no longer
      exists, so it is failed at once (:func:`fail_dead_trials`) -- a killed sweep restarted on
      its machine re-runs the trial without waiting;
    * any machine: the trial's heartbeat (written every ``_HEARTBEAT_INTERVAL`` s by Optuna's
      ``RDBStorage`` heartbeat thread) is older than ``_GRACE`` s, so
      ``optuna.storages.fail_stale_trials`` fails it -- this covers a machine that died, whose
      pids the others cannot check.

    Either way the storage's :class:`optuna.storages.RetryFailedTrialCallback` (at most
    ``_MAX_RETRY`` retries) enqueues the same parameters as a WAITING trial, which the next worker
    to start a trial picks up, so the study still reaches exactly ``n_trials`` finished trials with
    the configurations the sampler chose. The failed trial keeps its FAIL state and writes no
    results line (its process died before it could), so each finished trial is recorded once.

    Returns
    -------
    int
        How many trials this call failed on the pid check (heartbeat failures are not counted).
    """
    import optuna

    n = fail_dead_trials(study)
    optuna.storages.fail_stale_trials(study)
    return n


def count_trials(study):
    """``(finished, running)``: the study's COMPLETE and PRUNED trials, and its RUNNING ones."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return finished, running
