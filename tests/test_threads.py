"""The measured thread policy: it keeps the faster count, probes again on a drift, and never
changes a result."""

import numpy as np
import pytest

from tinygrad_free import nn, optim, threads
from tinygrad_free.kernels import parallel


class FakeClock:
    """A step costs ``cost[count]`` seconds at the policy's current count (times a random factor
    when ``noise`` is set)."""

    def __init__(self, policy_ref, cost, noise=0.0, seed=0):
        self.t, self.policy_ref, self.cost, self.noise = 0.0, policy_ref, cost, noise
        self.rng = np.random.default_rng(seed)
        self.at = {}  # count -> seconds spent at it

    def __call__(self):
        return self.t

    def run(self, steps):
        policy = self.policy_ref[0]
        for _ in range(steps):
            dt = self.cost[policy.current] * (self.rng.lognormal(0, self.noise) if self.noise else 1.0)
            self.t += dt
            self.at[policy.current] = self.at.get(policy.current, 0.0) + dt
            policy.tick()


def make(cost, noise=0.0, **options):
    ref = []
    clock = FakeClock(ref, cost, noise)
    options = {"block": 4, "block_seconds": 1e9, **options}  # blocks of 4 timed steps
    policy = threads.StepThreads(candidates=(1, 2), clock=clock, **options)
    ref.append(policy)
    return policy, clock


def events(policy, kind):
    return [(count, value) for event, count, value in policy.history if event == kind]


PROBE_STEPS = 6 * 5  # three probe blocks per count, each 4 timed steps + 1 warm-up step


def test_the_probe_keeps_the_count_with_the_shorter_steps():
    for cost, best in (({1: 1.0, 2: 0.6}, 2), ({1: 1.0, 2: 1.7}, 1)):
        policy, clock = make(cost)
        try:
            clock.run(PROBE_STEPS)
            assert policy.chosen == best and policy.current == best
            assert [c for c, _ in events(policy, "probe")] == [1, 2] * 3
        finally:
            policy.close()


def test_a_collapse_of_the_kept_count_switches_at_once_and_the_policy_comes_back_when_it_ends():
    policy, clock = make({1: 1.0, 2: 0.6})
    try:
        clock.run(PROBE_STEPS + 50)
        assert policy.chosen == 2
        clock.cost[2] = 3.0  # another process took the second core
        clock.run(60)  # two slow blocks, then three explorations of 1 in a row
        assert policy.chosen == 1 and events(policy, "switch")[-1][0] == 1
        clock.cost[2] = 0.6  # it left: a later exploration finds out
        clock.run(5 * (threads.StepThreads.MAX_INTERVAL + 10))
        assert policy.chosen == 2
        assert [c for c, _ in events(policy, "switch")] == [1, 2]
    finally:
        policy.close()


def test_counts_within_the_hysteresis_do_not_flip_flop_even_with_noisy_steps():
    policy, clock = make({1: 1.0, 2: 0.99}, noise=0.05)
    try:
        clock.run(PROBE_STEPS + 5 * 2000)
        assert len(events(policy, "switch")) <= 4  # of 2000 blocks
    finally:
        policy.close()


def test_noisy_steps_still_end_at_the_faster_count_most_of_the_time():
    """Steps 30% noisy (lognormal), 10% apart, in the default blocks of 32 steps."""
    for cost, best in (({1: 1.0, 2: 0.9}, 2), ({1: 0.9, 2: 1.0}, 1)):
        policy, clock = make(cost, noise=0.3, block=32)
        try:
            clock.run(33 * 3000)
            share = clock.at.get(best, 0.0) / sum(clock.at.values())
            assert share > 0.9, (cost, share, events(policy, "switch"))
        finally:
            policy.close()


def test_exploring_the_slower_count_costs_about_the_budget():
    """About ``budget`` of the time, or gap / MAX_INTERVAL for a count far slower (which is
    still looked at every MAX_INTERVAL blocks, to notice when it recovers)."""
    for gap in (0.05, 0.3, 3.0):
        policy, clock = make({1: 1.0, 2: 1.0 + gap}, budget=0.01, block=32)
        try:
            clock.run(6 * 33)  # the probe
            before = dict(clock.at)
            clock.run(33 * 4000)
            at = {c: clock.at[c] - before[c] for c in (1, 2)}
            overhead = at[2] * gap / (1 + gap) / (at[1] + at[2] / (1 + gap))  # vs all at 1
            assert policy.chosen == 1
            assert len(events(policy, "explore")) >= 4000 // threads.StepThreads.MAX_INTERVAL
            assert overhead < 1.2 * max(0.01, gap / threads.StepThreads.MAX_INTERVAL), (gap, overhead)
        finally:
            policy.close()


def test_long_steps_end_a_block_after_block_seconds_with_at_least_three_steps():
    policy, clock = make({1: 0.5, 2: 0.4}, block=32, block_seconds=1.0)
    try:
        clock.run(4)  # warm-up, then 3 timed steps of 0.5 s: 1.5 s >= 1 s
        assert events(policy, "probe") == [(1, 0.5)]
    finally:
        policy.close()


def test_switching_does_not_rescan_the_loaded_libraries(monkeypatch):
    """threadpool_limits enumerates every loaded library per call (milliseconds): the policy
    switches through one controller made up front."""
    import threadpoolctl

    policy, clock = make({1: 1.0, 2: 0.6})
    try:
        clock.run(1)

        def rescan(*args, **kwargs):
            raise AssertionError("threadpool_limits called per switch")

        monkeypatch.setattr(threadpoolctl, "threadpool_limits", rescan)
        monkeypatch.setattr(threadpoolctl, "ThreadpoolController", rescan)
        clock.run(PROBE_STEPS + 200)
        assert len(events(policy, "probe")) == 6
    finally:
        policy.close()


def test_resume_after_a_pause_neither_times_the_pause_nor_loses_the_count():
    policy, clock = make({1: 1.0, 2: 0.6})
    try:
        clock.run(PROBE_STEPS + 7)
        count = policy.current
        policy._counts._blas.limit(limits=1)  # the loop ran something else at another count meanwhile
        clock.t += 1000.0  # ... for a long time
        policy.resume()
        assert policy.current == count == 2
        assert {i["num_threads"] for i in policy._counts._blas.info()} == {2}  # put back
        clock.run(20)
        medians = [v for e, _, v in policy.history if e in ("block", "probe")]
        assert max(medians) <= 1.0
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
    with pytest.raises(ValueError, match="block must be at least 3"):
        threads.StepThreads(block=2)
    with pytest.raises(ValueError, match="budget must be positive, got 0"):
        threads.StepThreads(budget=0)
    with pytest.raises(ValueError, match=r"hysteresis must be in \[0, 1\), got 1.5"):
        threads.StepThreads(hysteresis=1.5)


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


def test_a_convnet_trains_to_identical_weights_on_one_and_two_threads():
    """Its convolutions and pooling run on numba's threads at two (batches this large)."""
    from tinygrad_free.train import Trainer

    rng = np.random.default_rng(0)
    x = rng.random((256, 1, 12, 12), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    weights = []
    for setting in (1, 2):
        r = np.random.default_rng(1)
        model = nn.Sequential(
            nn.Conv2D(1, 8, 3, activation="relu", rng=r),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(8 * 5 * 5, 10, rng=r),
        )
        trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters()), progress=False, threads=setting)
        trainer.fit(x, y, epochs=2, batch_size=64, seed=0)
        weights.append(np.concatenate([p.data.ravel() for p in model.parameters()]))
    np.testing.assert_array_equal(weights[0], weights[1])


def test_a_thread_variable_caps_the_candidates(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.available_threads() == 1
    policy = threads.StepThreads()
    try:
        assert policy.candidates == (1,)
    finally:
        policy.close()
