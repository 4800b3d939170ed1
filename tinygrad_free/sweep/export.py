"""Every finished trial of a study, from whichever machine ran it, gathered into one results file."""

import json
import os

from ..fileio import atomic_write_text
from .results import RESULT_ATTR, json_safe, results_record
from .storage import display_url, open_storage


def export_results(storage, study_name, path, metric="val_accuracy"):
    """Write every finished trial of a study to a results JSONL file, whichever machine ran it.

    Each machine's workers append to their own machine's results file; the study in the shared
    database holds every trial's whole result (its ``result`` user attribute), so this gathers a
    sweep run on many machines into one file for :mod:`tinygrad_free.report`. The lines are
    those :func:`results_record` gives the workers, in trial order; ``path`` is replaced
    atomically.

    Exported: COMPLETE and PRUNED trials, and FAIL trials whose run raised (status ``failed``).
    Left out: RUNNING and WAITING trials, and FAIL trials without a result -- those of a worker
    that was killed, whose parameters were re-queued and re-run as another trial.

    Returns
    -------
    dict
        ``records`` (lines written), ``skipped`` (trials left out) and ``machines`` (lines per
        machine).

    Raises
    ------
    ValueError
        When the storage holds no study ``study_name`` (the message lists those it holds).
    """
    import optuna
    from optuna.trial import TrialState

    if storage.startswith("sqlite:///") and not os.path.exists(storage[len("sqlite:///") :]):
        raise ValueError(f"no study database at {storage}; give the --storage URL the sweep ran with")
    store = open_storage(storage)
    names = [s.study_name for s in store.get_all_studies()]
    if study_name not in names:
        raise ValueError(
            f"storage {display_url(storage)} holds no study {study_name!r}; "
            f"its studies: {', '.join(sorted(names)) or 'none'}"
        )
    study = optuna.load_study(study_name=study_name, storage=store)
    records, skipped, machines = [], 0, {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        stored = t.user_attrs.get(RESULT_ATTR)
        if not (t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and stored)):
            skipped += 1
            continue
        record = json_safe(results_record(study_name, t, stored, metric))
        records.append(json.dumps(record, allow_nan=False) + "\n")
        machines[record["machine"]] = machines.get(record["machine"], 0) + 1
    atomic_write_text(path, "".join(records))
    return {"records": len(records), "skipped": skipped, "machines": machines}
