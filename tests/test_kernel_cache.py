"""numba's on-disk cache checks a kernel against the one source file that defines it; ours is
salted with every kernel file, so a kernel that inlines a helper from another file recompiles
when that helper changes (instead of running its stale compiled code)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from tinygrad_free import kernels
z = np.full((2, 3), 0.5, np.float32)
kernels.NUMBA.bias_act(z, None, kernels.dense.TANH)  # dense.py's kernel, inlining approx.tanh
print(repr(float(z[0, 0])))
"""


def test_editing_a_helper_in_another_file_recompiles_the_kernel_that_inlines_it(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "tinygrad_free", copy / "tinygrad_free", ignore=shutil.ignore_patterns("__pycache__"))
    script = tmp_path / "probe.py"
    script.write_text(PROBE.format(root=str(copy)))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}

    def run():
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return float(done.stdout.strip().splitlines()[-1])

    before = run()  # compiles, and caches beside the copy's kernels
    assert before == pytest.approx(0.46211716, rel=1e-6)
    assert list((copy / "tinygrad_free" / "kernels" / "__pycache__").glob("dense.*.nbi"))
    approx = copy / "tinygrad_free" / "kernels" / "approx.py"
    source = approx.read_text()
    assert "CLAMP = np.float32(9.0)" in source
    approx.write_text(source.replace("CLAMP = np.float32(9.0)", "CLAMP = np.float32(0.25)"))  # tanh(0.5) -> tanh(0.25)
    after = run()
    assert after == pytest.approx(0.24491866, rel=1e-6)  # dense.py's cached kernel was not reused
