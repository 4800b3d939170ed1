"""What a Transformer's training adds to the optimizers: AdamW (decoupled weight decay) against
torch.optim.AdamW, and the warm-up + cosine and one-cycle schedules against PyTorch's OneCycleLR
and Hugging Face's cosine-with-warm-up formula; both by name, saved in the optimizer's state."""

import math

import numpy as np
import pytest

from tinygrad_free import nn, optim
from tinygrad_free.optim import schedule

torch = pytest.importorskip("torch")


def test_adamw_matches_torch_adamw_with_decay_on_the_weights_only(rng):
    model = nn.Sequential(
        nn.Dense(4, 5, activation="tanh", dtype=np.float64, rng=0), nn.Dense(5, 3, dtype=np.float64, rng=1)
    )
    ref = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    ref.load_state_dict({k: torch.tensor(v) for k, v in model.torch_state_dict(like=ref.state_dict()).items()})
    weights = [ref[0].weight, ref[2].weight]
    biases = [ref[0].bias, ref[2].bias]
    opt = optim.create("adamw", model.parameters(), lr=0.02, weight_decay=0.3, schedule="warmup_cosine", total_steps=6)
    topt = torch.optim.AdamW([{"params": weights}, {"params": biases, "weight_decay": 0.0}], lr=0.02, weight_decay=0.3)
    tsched = torch.optim.lr_scheduler.LambdaLR(topt, lambda s: schedule.WarmupCosine(6)(s + 1))
    for _ in range(6):
        x, gy = rng.standard_normal((7, 4)), rng.standard_normal((7, 3))
        model(x)
        model.backward(gy)
        opt.step()
        opt.zero_grad()
        ref(torch.tensor(x)).backward(torch.tensor(gy))
        topt.step()
        topt.zero_grad()
        tsched.step()
    for ours, theirs in zip(model.torch_state_dict(like=ref.state_dict()).values(), ref.state_dict().values()):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-12)


def test_adamw_defaults_to_torchs_weight_decay_and_round_trips_its_state():
    model = nn.Dense(3, 2, rng=0)
    opt = optim.AdamW(model.parameters())
    assert opt.weight_decay == 0.01 and optim.get("adamw") is optim.AdamW
    other = optim.AdamW(nn.Dense(3, 2, rng=1).parameters())
    other.load_state_dict(opt.state_dict())
    assert other.weight_decay == 0.01


def test_one_cycle_is_torchs_one_cycle_lr_step_for_step():
    for total in (1, 2, 7, 100):
        opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
        ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=total)
        ours = optim.SGD(nn.Dense(2, 2).parameters(), lr=0.3, schedule="one_cycle", total_steps=total)
        for _ in range(total):
            want = opt.param_groups[0]["lr"]
            ours.step()
            assert ours.last_lr == pytest.approx(want, rel=1e-12)
            opt.step()
            ref.step()


def test_warmup_cosine_is_hugging_faces_cosine_schedule_with_warmup():
    total, warm = 50, 5

    def hf(step):  # transformers.get_cosine_schedule_with_warmup's lambda
        if step < warm:
            return step / max(1, warm)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * (step - warm) / (total - warm))))

    s = schedule.WarmupCosine(total, warmup=warm / total)
    assert [s(t + 1) for t in range(total)] == pytest.approx([hf(t) for t in range(total)], abs=1e-15)


def test_the_new_schedules_keep_their_settings_in_the_optimizers_state():
    model = nn.Dense(2, 2, rng=0)
    opt = optim.Adam(model.parameters(), schedule=schedule.OneCycle(10, pct_start=0.2, div_factor=10.0))
    other = optim.Adam(nn.Dense(2, 2, rng=0).parameters())
    other.load_state_dict(opt.state_dict())
    assert isinstance(other.schedule, schedule.OneCycle) and other.schedule.pct_start == 0.2
    assert other.schedule.div_factor == 10.0
    with pytest.raises(ValueError, match="warmup must be a fraction of the steps"):
        schedule.WarmupCosine(10, warmup=1.0)
    assert {"warmup_cosine", "one_cycle"} <= set(schedule.SCHEDULES.names())
