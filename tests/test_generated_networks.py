"""Random networks against PyTorch: outputs, every gradient and three steps of every optimizer,
on networks a generator draws (every built-in layer and container, modules reused at random
places, fan-out and merges, train or eval per module, float64). ``scripts/fuzz.py --minutes N``
runs the same generator for longer; what it finds is replayed here from fuzz_regressions.json."""

import pytest

hypothesis = pytest.importorskip("hypothesis")
pytest.importorskip("torch")

from fuzz_networks import Rejected, check_against_torch, network_specs, regressions  # noqa: E402
from hypothesis import HealthCheck, given, reject, settings  # noqa: E402

#: The CI budget: fixed examples (derandomised), a few seconds.
CI = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@CI
@given(network_specs())
def test_random_networks_match_pytorch_in_outputs_gradients_and_optimizer_steps(spec):
    try:
        check_against_torch(spec)
    except Rejected:
        reject()


@pytest.mark.parametrize("spec", regressions(), ids=lambda s: s.get("found", "example"))
def test_networks_the_fuzzer_once_found_wrong_match_pytorch(spec):
    try:
        check_against_torch(spec)
    except Rejected as e:
        pytest.skip(f"the comparison cannot judge this example: {e}")
