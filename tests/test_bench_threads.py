"""The thread benchmarks' pages (bench_threads.py, bench_grains.py): made from their JSON alone, and
their arguments checked with messages that say what is allowed."""

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import bench_grains  # noqa: E402
import bench_threads  # noqa: E402


@pytest.mark.parametrize(
    "module, name", [(bench_threads, "threads_inprocess"), (bench_grains, "grains"), (bench_grains, "grains_backward")]
)
def test_each_committed_page_is_its_json_rendered(module, name):
    result = json.loads((BENCH / "results" / f"{name}.json").read_text())
    assert module.markdown(result) == (BENCH / "results" / f"{name}.md").read_text()


def test_the_threads_page_holds_the_plain_loop_beside_the_fixed_counts_and_the_policy():
    result = json.loads((BENCH / "results" / "threads_inprocess.json").read_text())
    for case in result["cases"]:
        per_step = case["seconds_per_step"]
        assert set(per_step) == {"1", "2", "default", "auto"}
        faster = min(per_step["1"], per_step["2"])
        assert case["default_over_faster_fixed"] == pytest.approx(per_step["default"] / faster)
    assert {c["network"] for c in result["cases"]} == {"mlp", "convnet"}


def test_the_grains_page_marks_a_grain_that_chose_the_slower_twin():
    case = {
        "optimizer": "Adam",
        "width": 8,
        "batch": 4,
        "parameters": 1000,
        "grain": 500,
        "grain_chooses": "parallel",
        "median_step": {"serial": 1e-4, "parallel": 2e-4, "one thread": 1e-4},
        "parallel_over_serial": 2.0,
    }
    meta = {"cpu_model": "cpu", "cpu_count": 2, "date": "d", "gemm": "mkl", "rounds": 1, "command": "c"}
    page = bench_grains.markdown({"meta": meta, "cases": [case]})
    assert "| 2.000 | parallel (grain 500) (the slower) |" in page
    case.update(parallel_over_serial=0.5)
    assert "| 0.500 | parallel (grain 500) |" in bench_grains.markdown({"meta": meta, "cases": [case]})


@pytest.mark.parametrize("case", ["mlp", "lstm:64", "mlp:0", "mlp:x"])
def test_a_case_that_is_not_network_colon_batch_is_refused_naming_the_networks(case, capsys):
    with pytest.raises(SystemExit):
        bench_threads.parse_args(["--cases", case])
    err = capsys.readouterr().err
    assert f"--cases: {case!r} is not network:batch with a network of ['mlp', 'convnet'] and a positive batch" in err


def test_the_backward_grain_run_refuses_other_optimizers_and_defaults_to_adam(capsys):
    with pytest.raises(SystemExit):
        bench_grains.parse_args(["--backward", "--optimizers", "SGD"])
    assert "--backward measures the steps with Adam only" in capsys.readouterr().err
    args = bench_grains.parse_args(["--backward"])
    assert args.optimizers == ["Adam"] and args.name == "grains_backward"
    assert bench_grains.parse_args([]).optimizers == ["Adam", "SGD"]
