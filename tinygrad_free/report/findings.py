"""The sweep's findings in prose: what the data support (gaps larger than the noise between
runs), never hard-coded; and the table of the best runs."""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

import numpy as np

from ..sweep import best_record
from .stats import gap_is_clear, mean_std_n
from .sweep_analysis import (
    NEAR_CHANCE,
    analysis_rows,
    goal_sign,
    is_continuous,
    metric_goal,
    param_effects,
    value_sort_key,
    varied_params,
)


def _fmt(v, pct):
    return f"{100 * v:.1f}%" if pct else f"{v:.4g}"


def _gap(v, pct):
    return f"{100 * v:.1f} points" if pct else f"{v:.4g}"


def _describe(config, keys):
    return ", ".join(
        f"{k}={config[k]:g}" if isinstance(config[k], float) else f"{k}={config[k]}" for k in keys if k in config
    )


def sweep_findings(records, metric="val_accuracy", goal=None, min_gap=0.05, min_runs=3):
    """Short statements the results support, each computed from the data.

    ``goal`` says whether ``metric`` is better high (``"maximize"``) or low (``"minimize"``);
    None takes it from the records or the metric's name (:func:`metric_goal`). Accuracies are
    shown as percentages, other metrics as plain numbers.

    The best run; the most important parameter; values whose runs are clearly worse than the
    parameter's best value (gap >= ``min_gap`` and two standard errors, ``min_runs`` runs each);
    pairs of values that fail together more than either alone (such as sigmoid with small random
    weights); the values behind diverged and near-chance runs.

    Returns
    -------
    list of str
        Markdown bullet texts (without the bullet).
    """
    goal = metric_goal(metric, records, goal)
    pct = metric.endswith("accuracy")
    rows = analysis_rows(records, metric)
    status = defaultdict(int)
    for r in records:
        status[r.get("status", "unknown")] += 1
    lines = [
        f"{len(records)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items(), key=lambda t: -t[1])) + "."
    ]
    best = best_record(records, metric, goal)
    if best is None or not rows:
        lines.append("No completed runs yet, so nothing to conclude.")
        return lines
    params = varied_params(rows)
    test = best.get("test_accuracy")
    lines.append(
        f"Best run: `{best.get('run_name')}` with {metric} {_fmt(best[metric], pct)}"
        + (f" and test accuracy {_fmt(test, True)}" if test is not None else "")
        + " ("
        + _describe(best.get("params") or best.get("config") or {}, params or best.get("params", {}))
        + ")."
    )
    sign = goal_sign(goal)
    worse = "lower" if sign > 0 else "higher"
    effects = param_effects(rows)
    if effects and len(rows) >= 10:  # with fewer runs the explained variance is mostly noise
        top = max(effects, key=lambda p: effects[p]["eta2"])
        lines.append(
            f"`{top}` matters most: alone it explains {100 * effects[top]['eta2']:.0f}% of the variance in {metric}."
        )
    ranked = sorted(rows, key=lambda t: sign * t[1], reverse=True)
    k = max(3, min(10, len(ranked) // 5))
    if len(ranked) >= 2 * k:
        for p in params:
            vals = {t[0].get(p) for t in ranked[:k]}
            if len(vals) == 1:
                lines.append(f"All top {k} runs use {p}={next(iter(vals))}.")
    inter = _interactions(rows, params, sign, min_gap, min_runs, metric=metric, pct=pct)
    hurts = []
    for p, e in effects.items():
        means = {v: s for v, s in e["means"].items() if s[2] >= min_runs}
        if len(means) < 2:
            continue
        best_v = max(means, key=lambda v: sign * means[v][0])
        for v, s in means.items():
            if v != best_v and sign * (means[best_v][0] - s[0]) > 0 and gap_is_clear(means[best_v], s, min_gap):
                hurts.append((abs(means[best_v][0] - s[0]), p, v, s, best_v, means[best_v]))
    for gap, p, v, s, bv, bs in sorted(hurts, key=lambda t: t[0], reverse=True)[:6]:
        text = (
            f"{p}={v} hurts: mean {metric} {_fmt(s[0], pct)} over {s[2]} runs vs {_fmt(bs[0], pct)} "
            f"for {p}={bv} ({bs[2]} runs), {_gap(gap, pct)} {worse}"
        )
        # Is the damage only that of a failing combination? Compare without the combination's runs.
        for it in inter:
            other = (
                (it["b"], it["v"])
                if (it["a"], it["u"]) == (p, v)
                else (it["a"], it["u"])
                if (it["b"], it["v"]) == (p, v)
                else None
            )
            if other is None:
                continue
            rest = [val for pr, val, _ in rows if pr.get(p) == v and pr.get(other[0]) != other[1]]
            if len(rest) >= min_runs:
                rs = mean_std_n(rest)
                clear = sign * (bs[0] - rs[0]) > 0 and gap_is_clear(bs, rs, min_gap)
                text += f"; without {other[0]}={other[1]} its mean is {_fmt(rs[0], pct)}, " + (
                    f"still clearly {worse}" if clear else "so most of the damage comes from that combination"
                )
                break
        lines.append(text + ".")
    lines += [it["text"] for it in inter]
    y = np.array([t[1] for t in rows])
    for label, mask in (
        ("diverged", np.array([t[2].get("status") == "diverged" for t in rows])),
        (
            f"ended near chance ({metric} < {_fmt(NEAR_CHANCE, pct)})",
            np.array([t[2].get("status") == "completed" for t in rows]) & (y < NEAR_CHANCE)
            if pct
            else np.zeros(len(rows), bool),
        ),
    ):
        if not mask.any():
            continue
        causes = []
        if mask.sum() < min_runs:  # too few to say what they have in common
            params_checked = []
        else:
            params_checked = params
        for p in params_checked:
            vals = np.array([str(t[0].get(p)) for t in rows])
            for v in np.unique(vals):
                share_bad = float(np.mean(vals[mask] == v))
                share_all = float(np.mean(vals == v))
                if share_bad >= 0.6 and share_bad >= 1.5 * share_all and share_all < 1:
                    causes.append(
                        (
                            share_bad / share_all,
                            f"{p}={v} ({100 * share_bad:.0f}% of them vs {100 * share_all:.0f}% of all runs)",
                        )
                    )
        text = f"{int(mask.sum())} of {len(rows)} runs {label}"
        if causes:
            text += "; over-represented among them: " + ", ".join(c for _, c in sorted(causes, reverse=True)[:4])
        lines.append(text + ".")
    return lines


def _interactions(rows, params, sign, min_gap, min_runs, metric, pct, k=3):
    """Pairs ``a=u, b=v`` whose runs are clearly worse than runs with ``a=u`` or ``b=v`` alone.

    ``sign`` is +1 when higher values of ``metric`` are better, -1 when lower ones are; ``pct``
    shows the values as percentages.

    Returns up to ``k`` dicts with ``a, u, b, v`` and a sentence ``text``, worst first.
    """
    found = []
    cats = [p for p in params if not is_continuous(sorted({t[0].get(p) for t in rows}, key=value_sort_key))]
    for a, b in combinations(cats, 2):
        groups = defaultdict(list)
        for params_, value, _ in rows:
            groups[(params_.get(a), params_.get(b))].append(value)
        for (u, v), values in groups.items():
            if len(values) < min_runs:
                continue
            combo = mean_std_n(values)
            only_a = [val for pr, val, _ in rows if pr.get(a) == u and pr.get(b) != v]
            only_b = [val for pr, val, _ in rows if pr.get(b) == v and pr.get(a) != u]
            if len(only_a) < min_runs or len(only_b) < min_runs:
                continue
            sa, sb = mean_std_n(only_a), mean_std_n(only_b)
            worse_a, worse_b = sign * (sa[0] - combo[0]), sign * (sb[0] - combo[0])
            if (
                worse_a > 0
                and worse_b > 0
                and gap_is_clear(sa, combo, 2 * min_gap)
                and gap_is_clear(sb, combo, 2 * min_gap)
            ):
                found.append(
                    (
                        min(worse_a, worse_b),
                        {
                            "a": a,
                            "u": u,
                            "b": b,
                            "v": v,
                            "text": f"{a}={u} together with {b}={v} fails: mean {metric} {_fmt(combo[0], pct)} over "
                            f"{combo[2]} runs, vs {_fmt(sa[0], pct)} for {a}={u} with another {b} and "
                            f"{_fmt(sb[0], pct)} for {b}={v} with another {a}.",
                        },
                    )
                )
    found.sort(key=lambda t: t[0], reverse=True)
    return [d for _, d in found[:k]]


def top_runs_table(records, metric="val_accuracy", goal=None, n=10):
    """(columns, rows) of the ``n`` best completed runs by ``metric`` (``goal``: see :func:`metric_goal`)."""
    goal = metric_goal(metric, records, goal)
    ok = [r for r in records if r.get("status") == "completed" and r.get(metric) is not None]
    ok.sort(key=lambda r: r[metric], reverse=goal == "maximize")
    columns = ["rank", "run", metric, "test_accuracy", "seconds"]
    rows = [
        [
            i + 1,
            r.get("run_name"),
            round(r[metric], 4),
            None if r.get("test_accuracy") is None else round(r["test_accuracy"], 4),
            None if r.get("seconds") is None else round(r["seconds"], 1),
        ]
        for i, r in enumerate(ok[:n])
    ]
    return columns, rows
