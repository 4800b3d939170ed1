"""A sweep's method and ``early_terminate`` as Optuna's sampler and pruner, and one trial's
parameters sampled from them."""

from .spec import METHODS, decode_choice


def make_sampler(spec, seed=None):
    """Optuna sampler for the sweep's method: random -> Random, grid -> Grid, bayes -> TPE."""
    import optuna

    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.method == "grid":
        return optuna.samplers.GridSampler(spec.grid(), seed=seed)
    if spec.method == "bayes":
        # constant_liar keeps parallel workers from proposing the same point while trials run.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    raise ValueError(f"unknown sweep method {spec.method!r}; choose one of {', '.join(METHODS)}")


def make_pruner(spec):
    """Optuna pruner for ``early_terminate``: HyperbandPruner, MedianPruner or NopPruner.

    wandb's hyperband brackets sit at ``max_iter / eta**k`` for ``k = 1..s``, so without
    ``min_iter`` the smallest resource is ``max_iter / eta**s``.
    """
    import optuna

    et = spec.early_terminate
    if not et:
        return optuna.pruners.NopPruner()
    if et["type"] == "hyperband":
        eta = int(et.get("eta", 3))
        max_iter = et.get("max_iter")
        if "min_iter" in et:
            min_resource = int(et["min_iter"])
        else:
            min_resource = max(1, int(int(max_iter) / eta ** int(et.get("s", 0))))
        return optuna.pruners.HyperbandPruner(
            min_resource=min_resource, max_resource=int(max_iter) if max_iter else "auto", reduction_factor=eta
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=int(et.get("n_startup_trials", 5)), n_warmup_steps=int(et.get("min_iter", 1))
    )


def suggest_params(trial, spec):
    """Sample every parameter of ``spec`` from an Optuna ``trial`` (constants included, decoded)."""
    params = {}
    for name, p in spec.params.items():
        if p.kind == "constant":
            value = p.value
        elif p.kind == "categorical":
            value = trial.suggest_categorical(name, p.distribution.choices)
            value = decode_choice(value) if p.encoded else value
        elif p.kind == "int_uniform":
            value = trial.suggest_int(name, p.distribution.low, p.distribution.high)
        else:
            d = p.distribution
            value = trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
            if p.q:
                # Round on the log scale's samples as wandb's q_log_* do, staying inside the bounds.
                value = float(min(max(round(value / p.q) * p.q, d.low), d.high))
        params[name] = value
    return params
