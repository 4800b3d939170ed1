"""The measured thread policy: it keeps the faster count, probes again on a drift, and never
changes a result."""

import numpy as np
import pytest

from tinygrad_free import nn, optim, threads
from tinygrad_free.kernels import parallel


class FakeClock:
    """A step costs ``cost[count]`` seconds at the policy's current count."""

    def __init__(self, policy_ref, cost):
        self.t, self.policy_ref, self.cost = 0.0, policy_ref, cost

    def __call__(self):
        return self.t

    def run(self, steps):
        policy = self.policy_ref[0]
        for _ in range(steps):
            self.t += self.cost[policy.current]
            policy.tick()


def make(cost, **options):
    ref = []
    clock = FakeClock(ref, cost)
    policy = threads.StepThreads(candidates=(1, 2), block=4, clock=clock, **options)
    ref.append(policy)
    return policy, clock


def test_the_policy_keeps_the_count_with_the_shorter_steps():
    for cost, best in (({1: 1.0, 2: 0.6}, 2), ({1: 1.0, 2: 1.7}, 1)):
        policy, clock = make(cost)
        try:
            clock.run(4 * 5)  # two probe blocks per count, each block 4 timed + 1 warm-up step
            assert policy.chosen == best and policy.current == best
            assert [e for e, _, _ in policy.history].count("probe") == 4
        finally:
            policy.close()


def test_a_drift_makes_the_policy_probe_again_and_follow_the_machine():
    policy, clock = make({1: 1.0, 2: 0.6}, reprobe_blocks=10)
    try:
        clock.run(20)
        assert policy.chosen == 2
        clock.cost[2] = 3.0  # another process took the second core
        clock.run(40)
        assert policy.chosen == 1 and policy.current == 1
        clock.cost[2] = 0.6  # it left: the periodic probe finds out
        clock.run(5 * 60)
        assert policy.chosen == 2
    finally:
        policy.close()


def test_closing_restores_the_thread_counts_of_before():
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas():
        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    with threadpool_limits(limits=2, user_api="blas"):
        before = (blas(), parallel.numba.get_num_threads())
        with threads.autotune(candidates=(1,)) as tick:
            tick()
            assert blas() == 1
        assert (blas(), parallel.numba.get_num_threads()) == before


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="candidates must be positive"):
        threads.StepThreads(candidates=(0, 2))
    with pytest.raises(ValueError, match="block must be at least 2"):
        threads.StepThreads(block=1)


@pytest.mark.skipif(threads.available_threads() < 2, reason="needs two CPUs")
def test_one_thread_two_threads_and_auto_train_to_identical_weights():
    from models import build_mlp
    from tinygrad_free.train import Trainer

    rng = np.random.default_rng(0)
    x = rng.random((1024, 784), dtype=np.float32)
    y = rng.integers(0, 10, 1024)
    weights = []
    for setting in (1, 2, "auto"):
        model = build_mlp(784, 2, 128, activation="tanh", rng=0)
        trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters()), progress=False, threads=setting)
        trainer.fit(x, y, epochs=2, batch_size=32, seed=0)
        weights.append(np.concatenate([p.data.ravel() for p in model.parameters()]))
    np.testing.assert_array_equal(weights[0], weights[1])
    np.testing.assert_array_equal(weights[0], weights[2])


def test_a_thread_variable_caps_the_candidates(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.available_threads() == 1
    policy = threads.StepThreads()
    try:
        assert policy.candidates == (1,)
    finally:
        policy.close()
