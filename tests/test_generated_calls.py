"""Random sequences of calls (forward, begin_update, backward, callbacks in any order, eval/train,
no_grad, zero_grad, in-place writes, optimizer steps) on random networks: every outcome is
PyTorch's numbers or the clear error the rules promise, never other numbers (see fuzz_calls)."""

import pytest

pytest.importorskip("hypothesis")
pytest.importorskip("torch")

from fuzz_calls import call_sequences, run_calls  # noqa: E402
from fuzz_networks import Rejected, regressions  # noqa: E402
from hypothesis import HealthCheck, given, reject, settings  # noqa: E402

CI = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@CI
@given(call_sequences())
def test_random_call_sequences_give_pytorchs_numbers_or_a_clear_error(seq):
    try:
        run_calls(seq)
    except Rejected:
        reject()


@pytest.mark.parametrize("seq", regressions("calls"), ids=lambda s: s.get("found", "example"))
def test_call_sequences_the_fuzzer_once_found_wrong_give_pytorchs_numbers_or_a_clear_error(seq):
    try:
        run_calls(seq)
    except Rejected as e:
        pytest.skip(f"the comparison cannot judge this example: {e}")
