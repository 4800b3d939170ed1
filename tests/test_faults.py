"""Fault catalogue: what a killed run, a crash in the middle of a save, and a folder that cannot
take the file do to training, and that each is handled (resumed, survived, or refused before any
training) rather than discovered at the end."""

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygrad_free import nn, optim
from tinygrad_free.callbacks import BackupAndRestore, Callback, ModelCheckpoint, check_writable
from tinygrad_free.recipes import build_mlp
from tinygrad_free.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = str(ROOT / "scripts" / "train.py")
SWEEP_SCRIPT = str(ROOT / "scripts" / "sweep.py")

# A run that exercises every piece of state a resume needs: Eve's optimizer-wide state
# (d, f_hat) and moments, a cosine schedule over all epochs, shuffling and augmentation.
CHILD = r'''
import json, os, sys, time
sys.path.insert(0, {root!r})
import numpy as np
from tinygrad_free.recipes import build_mlp
from tinygrad_free import nn, optim
from tinygrad_free.augment import RandomShift
from tinygrad_free.callbacks import BackupAndRestore, Callback
from tinygrad_free.train import Trainer

backup, out = sys.argv[1], sys.argv[2]


class StallAfterFirstEpoch(Callback):
    """Stand-in for a long run: after epoch 1 (its backup written) wait to be killed."""

    def on_epoch_end(self, trainer, logs):
        if os.environ.get("STALL") and logs["epoch"] == 1:
            print("epoch 1 backed up", flush=True)
            time.sleep(300)


rng = np.random.default_rng(0)
x = rng.random((400, 64), dtype=np.float32)
y = (x[:, :8].sum(axis=1) > 4).astype(np.int64) + (x[:, 8] > 0.5)
model = build_mlp(64, 2, 16, "tanh", "xavier", num_classes=3, rng=0)
opt = optim.create("eve", model.parameters(), lr=3e-3)
callbacks = ([BackupAndRestore(backup)] if backup != "-" else []) + [StallAfterFirstEpoch()]
history = Trainer(model, nn.CrossEntropyLoss(), opt, callbacks, progress=False).fit(
    x[:320], y[:320], epochs=4, batch_size=16, seed=3, lr_schedule="cosine", augment=RandomShift(1, (8, 8)),
    validation_data=(x[320:], y[320:]))
model.save(out)
keys = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
print(json.dumps({{k: history.history[k] for k in keys}}), flush=True)
'''


def child_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("STALL", None)
    return env


def test_a_run_killed_after_its_first_backup_resumes_to_the_uninterrupted_weights(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT)))
    backup = tmp_path / "run" / "state.npz"

    def run(backup_arg, out):
        done = subprocess.run(
            [sys.executable, str(script), backup_arg, str(out)],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    whole = run("-", tmp_path / "whole.npz")

    killed = subprocess.Popen(
        [sys.executable, str(script), str(backup), str(tmp_path / "killed.npz")],
        env=dict(child_env(), STALL="1"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert killed.stdout.readline().strip() == "epoch 1 backed up"
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.kill()
        killed.wait(timeout=60)
        killed.stdout.close()
    assert killed.returncode == -signal.SIGKILL
    assert backup.exists() and not (tmp_path / "killed.npz").exists()

    resumed = run(str(backup), tmp_path / "resumed.npz")
    assert resumed == whole  # epoch 1 from the backup, 2-4 trained again
    a, b = nn.load(tmp_path / "whole.npz"), nn.load(tmp_path / "resumed.npz")
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    assert not backup.exists()  # a finished run leaves no backup to resume


def small_trainer(callbacks=(), seed=0):
    rng = np.random.default_rng(1)
    x = rng.random((64, 10), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    model = build_mlp(10, 1, 6, "relu", "xavier", num_classes=2, rng=seed)
    opt = optim.create("adam", model.parameters(), lr=1e-2)
    return Trainer(model, nn.CrossEntropyLoss(), opt, list(callbacks), progress=False), x, y


@contextlib.contextmanager
def savez_crashing_halfway():
    """np.savez that writes the first half of the archive, then fails as a full disk would."""
    real = np.savez

    def crash(file, *args, **kwargs):
        buffer = io.BytesIO()
        real(buffer, *args, **kwargs)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device (simulated mid-write)")

    np.savez = crash
    try:
        yield
    finally:
        np.savez = real


def no_temporary_files(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".tmp-")] == []


def test_a_crash_in_the_middle_of_a_backup_leaves_the_previous_one_intact_and_resumable(tmp_path):
    path = tmp_path / "state.npz"
    backup = BackupAndRestore(path, delete_on_end=False)
    trainer, x, y = small_trainer([backup])
    trainer.fit(x, y, epochs=1, batch_size=16)
    before = path.read_bytes()
    with savez_crashing_halfway(), pytest.raises(OSError, match="simulated mid-write"):
        backup.save(trainer, 2)
    assert path.read_bytes() == before and no_temporary_files(tmp_path)

    fresh, _, _ = small_trainer([BackupAndRestore(path)], seed=5)  # other initial weights
    history = fresh.fit(x, y, epochs=2, batch_size=16)
    assert history.history["epoch"] == [1, 2] and fresh.optimizer.t == 8
    reference, _, _ = small_trainer()
    reference.fit(x, y, epochs=2, batch_size=16)
    for p, q in zip(fresh.model.parameters(), reference.model.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_a_crash_in_the_middle_of_saving_the_best_model_leaves_the_previous_model(tmp_path):
    path = tmp_path / "best.npz"
    trainer, x, y = small_trainer()
    trainer.model.save(path)
    saved = [p.data.copy() for p in trainer.model.parameters()]
    trainer.fit(x, y, epochs=1, batch_size=16)
    checkpoint = ModelCheckpoint(path, monitor="train_accuracy")
    with savez_crashing_halfway(), pytest.raises(OSError, match="simulated mid-write"):
        checkpoint.on_epoch_end(trainer, {"epoch": 1, "train_accuracy": 1.0})
    for p, q in zip(nn.load(path).parameters(), saved):
        np.testing.assert_array_equal(p.data, q)
    assert no_temporary_files(tmp_path)


def test_resuming_with_other_settings_is_refused_by_name(tmp_path):
    path = tmp_path / "state.npz"
    trainer, x, y = small_trainer([BackupAndRestore(path, delete_on_end=False)])
    trainer.fit(x, y, epochs=1, batch_size=16, seed=3)
    other, _, _ = small_trainer([BackupAndRestore(path)])
    with pytest.raises(ValueError, match=r"written by a run with other settings: seed 3 \(now 4\).*delete the file"):
        other.fit(x, y, epochs=2, batch_size=16, seed=4)
    assert other.optimizer.t == 0
    path.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not a readable training state"):
        small_trainer([BackupAndRestore(path)])[0].fit(x, y, epochs=2, batch_size=16, seed=3)


def test_a_save_path_under_a_file_is_refused_before_any_data_is_loaded(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    for flag in ("--save", "--backup"):
        out = subprocess.run(
            [
                sys.executable,
                TRAIN_SCRIPT,
                flag,
                str(blocker / "model.npz"),
                "--data_dir",
                str(tmp_path / "no_data_here"),
                "--wandb_mode",
                "disabled",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2
        assert (
            f"argument {flag}: cannot save to {blocker / 'model.npz'}: {blocker} is a file, not a folder" in out.stderr
        )
        assert "epoch" not in out.stdout and "no_data_here" not in out.stderr


def test_the_sweeps_results_file_is_checked_before_any_trial(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    out = subprocess.run(
        [
            sys.executable,
            SWEEP_SCRIPT,
            str(ROOT / "sweeps" / "quick.yaml"),
            "--backend",
            "local",
            "--results",
            str(blocker / "results.jsonl"),
            "--storage",
            f"sqlite:///{tmp_path}/s.db",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert f"argument --results: cannot save to {blocker / 'results.jsonl'}" in out.stderr
    assert not (tmp_path / "s.db").exists()


def test_check_writable_names_each_reason(tmp_path):
    with pytest.raises(IsADirectoryError, match="it is a folder; give a file name"):
        check_writable(tmp_path)
    with pytest.raises(OSError, match="no file can be created in /proc"):
        check_writable("/proc/model.npz")
    check_writable(tmp_path / "new" / "deeper" / "model.npz")  # created by the save itself
    assert list(tmp_path.iterdir()) == []  # the check leaves nothing behind


@contextlib.contextmanager
def tmpfs(folder, size, read_only=False):
    """A real small (or read-only) filesystem; skips where mounting is not allowed (not root)."""
    folder.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_folder_is_refused_before_training(tmp_path):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as folder:
        with pytest.raises(OSError, match=f"no file can be created in {folder} .*Read-only file system"):
            check_writable(folder / "model.npz")
        trainer, x, y = small_trainer([ModelCheckpoint(folder / "model.npz")])
        with pytest.raises(OSError, match="Read-only file system"):
            trainer.fit(x, y, validation_data=(x, y))
        assert trainer.optimizer.t == 0


def test_a_full_disk_is_refused_when_training_begins_not_at_the_first_save(tmp_path):
    with tmpfs(tmp_path / "full", "64k") as folder:
        with contextlib.suppress(OSError):
            with open(folder / "filler", "wb") as f:
                f.write(b"\0" * (1 << 20))  # fills the 64 KB disk
        trainer, x, y = small_trainer([BackupAndRestore(folder / "state.npz")])
        with pytest.raises(OSError, match=r"bytes free on the disk of .*, the file needs about"):
            trainer.fit(x, y)
        assert trainer.optimizer.t == 0
        out = subprocess.run(
            [
                sys.executable,
                TRAIN_SCRIPT,
                "--save",
                str(folder / "model.npz"),
                "-e",
                "1",
                "--limit",
                "200",
                "--wandb_mode",
                "disabled",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 2, out.stderr
        assert "train.py: error: cannot save to" in out.stderr and "bytes free" in out.stderr
        assert "epoch   1" not in out.stdout


def test_the_best_model_of_a_resumed_run_is_the_uninterrupted_runs(tmp_path):
    """The best-model checkpoint listed before the backup still sees the restored history."""

    def run(folder, epochs, interrupt_after=None):
        class Interrupt(Callback):
            def on_epoch_end(self, trainer, logs):
                if logs["epoch"] == interrupt_after:
                    raise KeyboardInterrupt

        best = ModelCheckpoint(folder / "best.npz", monitor="val_loss")
        trainer, x, y = small_trainer([best, BackupAndRestore(folder / "state.npz"), Interrupt()])
        trainer.fit(x, y, epochs=epochs, batch_size=16, validation_data=(x[:20], y[:20]))
        return best

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = run(tmp_path / "a", 6)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", 6, interrupt_after=5)  # the best epoch is 5; 6 is worse
    resumed = run(tmp_path / "b", 6)
    assert (resumed.best, resumed.best_epoch) == (whole.best, whole.best_epoch)
    a, b = nn.load(tmp_path / "a" / "best.npz"), nn.load(tmp_path / "b" / "best.npz")
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_the_epoch_log_says_a_run_resumed(tmp_path, capsys):
    from tinygrad_free.callbacks import PrintLogger

    path = tmp_path / "state.npz"
    trainer, x, y = small_trainer([BackupAndRestore(path, delete_on_end=False)])
    trainer.fit(x, y, epochs=1, batch_size=16)
    trainer, _, _ = small_trainer([PrintLogger(), BackupAndRestore(path)])
    trainer.fit(x, y, epochs=2, batch_size=16)
    lines = capsys.readouterr().out.splitlines()
    assert "resuming after epoch 1" in lines and sum(line.startswith("epoch ") for line in lines) == 1
