"""The optimizer kernels' parallel twins (kernels.parallel): same result as the serial kernels,
bit for bit, and taken only when they pay off."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygrad_free import kernels
from tinygrad_free.kernels import optim, parallel

numba = pytest.importorskip("numba")
ROOT = Path(__file__).resolve().parents[1]
CHUNK = parallel.CHUNK

two_threads = pytest.mark.skipif(
    numba.config.NUMBA_NUM_THREADS < 2 or not parallel.layer_ok(),
    reason="needs two numba threads on the OpenMP or TBB layer",
)


def run_all(kernel_set, w, g, m, v, u):
    """Three steps of every optimizer kernel of ``kernel_set`` ('numba' or 'parallel') in place."""
    fn = {name: getattr(optim, f"{name}_{kernel_set}") for name in ("sgd", "momentum", "rmsprop", "adam", "nadam")}
    for t in range(1, 4):
        fn["sgd"](w, g, None, 0.01)
        fn["momentum"](w, g, u, None, 0.01, 0.9, t % 2 == 0)
        fn["rmsprop"](w, g, v, None, 1e-3, 0.9, 1e-8)
        fn["adam"](w, g, m, v, None, 1e-3, 0.9, 0.999, 1e-8, 1 - 0.9**t, 1 - 0.999**t)
        fn["nadam"](w, g, m, v, None, 1e-3, 0.9, 0.999, 1e-8, 1 - 0.999**t, 9.0 / t, 1.0 / t)


@two_threads
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 15, CHUNK - 1, CHUNK, CHUNK + 3, 5 * CHUNK + 7, 134_794])
def test_parallel_twins_equal_the_serial_kernels_bit_for_bit(rng, dtype, n):
    arrays = [rng.standard_normal(n).astype(dtype) for _ in range(5)]
    arrays[3] = np.abs(arrays[3])  # v >= 0
    serial = [a.copy() for a in arrays]
    with parallel.num_threads(2):
        run_all("parallel", *arrays)
    run_all("numba", *serial)
    for got, expected in zip(arrays, serial):
        np.testing.assert_array_equal(got, expected)


@two_threads
def test_parallel_twins_take_any_contiguous_shape_and_strided_vectors(rng):
    w = rng.standard_normal((300, 200)).astype(np.float32)  # C-contiguous 2-D: 60,000 elements
    g = rng.standard_normal((300, 200)).astype(np.float32)
    expected = w - np.float32(0.5) * g
    with parallel.num_threads(2):
        optim.sgd_parallel(w, g, None, 0.5)
        np.testing.assert_array_equal(w, expected)
        base = rng.standard_normal(2 * 40_000)
        w = base.copy()
        g = rng.standard_normal(40_000)
        optim.sgd_parallel(w[::2], g, None, 0.5)  # a strided vector, updated in place
    np.testing.assert_array_equal(w[1::2], base[1::2])
    np.testing.assert_array_equal(w[::2], base[::2] - g * 0.5)


def test_parallel_twins_reject_mismatched_sizes():
    with pytest.raises(ValueError, match="same number of elements"):
        optim.adam_parallel(
            np.zeros(10, np.float32),
            np.zeros(9, np.float32),
            np.zeros(10, np.float32),
            np.zeros(10, np.float32),
            None,
            1e-3,
            0.9,
            0.999,
            1e-8,
            0.1,
            0.001,
        )


def test_chunks_cover_the_buffer_once_on_cache_line_boundaries():
    for n in (1, 16, CHUNK - 1, CHUNK, CHUNK + 1, 7 * CHUNK + 5):
        bounds = [parallel.chunk(n, c) for c in range(parallel.n_chunks(n))]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(hi == lo2 for (_, hi), (lo2, _) in zip(bounds, bounds[1:]))
        assert all(lo < hi and lo % 16 == 0 for lo, hi in bounds)
    assert CHUNK % 16 == 0


@two_threads
def test_the_parallel_twin_is_taken_only_for_large_buffers_and_several_threads():
    with parallel.num_threads(2):
        assert parallel.use_parallel(parallel.MIN_PARALLEL)
        assert not parallel.use_parallel(parallel.MIN_PARALLEL - 1)
        assert parallel.use_parallel(1000, grain=1000) and not parallel.use_parallel(999, grain=1000)
    with parallel.num_threads(1):
        assert not parallel.use_parallel(10**7)
    assert kernels.NUMBA.adam.serial is optim.adam_numba and kernels.NUMBA.adam.parallel is optim.adam_parallel


@two_threads
def test_a_threaded_kernel_runs_its_serial_twin_below_its_grain_and_its_parallel_one_from_it():
    ran = []
    kernel = parallel.threaded(lambda w: ran.append("serial"), lambda w: ran.append("parallel"), grain=100)
    with parallel.num_threads(2):
        kernel(np.zeros(99))
        kernel(np.zeros(100))
    with parallel.num_threads(1):
        kernel(np.zeros(10**4))
    assert ran == ["serial", "parallel", "serial"]


@two_threads
@pytest.mark.parametrize(
    "name, grain",
    [
        ("sgd", optim.PLAIN_GRAIN),
        ("momentum", optim.PLAIN_GRAIN),
        ("rmsprop", optim.ROOT_GRAIN),
        ("adam", optim.ROOT_GRAIN),
        ("nadam", optim.ROOT_GRAIN),
    ],
)
def test_each_update_runs_in_parallel_from_its_own_measured_grain(name, grain):
    # The reference MLP's 134,794 parameters update on one thread even when numba has two (in a
    # training step the parallel twin made it slower), a network of millions on both.
    kernel = getattr(kernels.NUMBA, name)
    assert kernel.grain == grain > 134_794
    with parallel.num_threads(2):
        assert not parallel.use_parallel(134_794, kernel.grain)
        assert parallel.use_parallel(3_000_000, kernel.grain)


def test_num_threads_sets_numba_threads_for_a_block_and_restores_them():
    before = numba.get_num_threads()
    with parallel.num_threads(1):
        assert numba.get_num_threads() == 1
    with parallel.num_threads(10**6):  # capped at what numba started
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    assert numba.get_num_threads() == before


def _in_subprocess(code, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


CHECK = """
import numpy as np, numba
from tinygrad_free.kernels import optim, parallel
w, g = np.ones(100_000, np.float32), np.full(100_000, 2, np.float32)
optim.sgd_threaded(w, g, None, 0.25)
assert (w == 0.5).all()
print(parallel.layer_ok(), numba.threading_layer())
"""


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_the_slow_workqueue_layer_falls_back_to_the_serial_kernels():
    assert _in_subprocess(CHECK, NUMBA_THREADING_LAYER="workqueue") == ["False", "workqueue"]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_openmp_is_preferred_unless_the_user_chose_a_layer():
    try:
        import numba.np.ufunc.omppool  # noqa: F401
    except ImportError:
        pytest.skip("numba's OpenMP layer is not available here")
    assert _in_subprocess(CHECK) == ["True", "omp"]
    if _tbb_available():
        assert _in_subprocess(CHECK, NUMBA_THREADING_LAYER="tbb") == ["True", "tbb"]


def _tbb_available():
    try:
        import numba.np.ufunc.tbbpool  # noqa: F401

        return True
    except ImportError:
        return False


FORK = """
import multiprocessing as mp, numba, numpy as np
from tinygrad_free.kernels import optim, parallel

def update(_):
    w, g = np.ones(400_000, np.float32), np.full(400_000, 2, np.float32)  # over Adam's grain
    optim.adam_threaded(w, g, np.zeros_like(w), np.zeros_like(w), None, 0.5, 0.9, 0.999, 1e-8, 0.1, 0.001)
    return float(w[0]), parallel.use_parallel(w.size, optim.adam_threaded.grain)

if __name__ == "__main__":
    print(*update(0), numba.threading_layer())          # the parent starts its threads
    with mp.get_context("fork").Pool(1) as pool:
        print(*pool.map(update, [0])[0])
"""


@pytest.mark.skipif(not hasattr(os, "fork") or numba.config.NUMBA_NUM_THREADS < 2, reason="needs fork, two threads")
def test_a_child_forked_after_a_parallel_update_updates_serially_instead_of_dying():
    out = _in_subprocess(FORK)
    parent_w, parent_parallel, parent_layer, child_w, child_parallel = out
    assert parent_w == child_w and abs(float(child_w) - 0.5) < 1e-6  # 1 - 0.5 * mh / sqrt(vh), mh 2, vh 4
    if parent_parallel == "True" and parent_layer == "omp":
        assert child_parallel == "False"
