"""bench_train's thread-policy table (issue 13's proof): the default against the faster fixed count."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_train_summary as S  # noqa: E402


def setting(threads, seconds, rounds=(1.0,)):
    """One thread setting's medians, and its runs: round r's epochs are ``seconds * rounds[r]``."""
    runs = [
        {"impl": S.OURS, "batch": b, "round": r + 1, "warmup_epochs": 1, "epoch_wall_s": [99.0, t * f, t * f]}
        for b, t in seconds.items()
        for r, f in enumerate(rounds)
    ]
    return {
        "openblas_env": "as_set",
        "threads": threads,
        "summary": {S.OURS: {str(b): {"median_s": t} for b, t in seconds.items()}},
        "runs": runs,
    }


def test_the_default_is_judged_against_the_faster_of_one_and_two_threads():
    rows = S.thread_policy(
        [setting(1, {16: 1.0, 64: 0.8}), setting(2, {16: 1.2, 64: 0.6}), setting("auto", {16: 1.04, 64: 0.66})],
        [16, 64],
    )
    assert [(r["batch"], round(r["default_over_faster_fixed"], 3), r["met"]) for r in rows] == [
        (16, 1.04, True),
        (64, 1.1, False),
    ]


def test_per_round_ratios_pair_the_settings_of_the_same_round_and_skip_warm_up_epochs():
    slow_second_round = (1.0, 2.0)  # the machine slowed down for every setting alike
    rows = S.thread_policy(
        [
            setting(1, {16: 1.0}, slow_second_round),
            setting(2, {16: 1.2}, slow_second_round),
            setting("auto", {16: 1.05}, slow_second_round),
        ],
        [16],
    )
    assert [round(x, 3) for x in rows[0]["per_round"]] == [1.05, 1.05]


def test_no_row_without_all_three_settings():
    assert S.thread_policy([setting(1, {16: 1.0}), setting(2, {16: 1.2})], [16]) == []
