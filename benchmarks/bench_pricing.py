"""List price vs personalised pricing on the evaluation ladder, end to end (issue 18; docs/pricing.md).

In a fresh home: simulate the bank with the logging policy's price exploration (every priced contact at a random
price on the customer's band), build and apply the features, train and promote the churn and NBA champions, fit
the price-response estimate from the logged prices (`nextbest pricing fit`), and run the evaluation ladder, whose
pricing table puts stage 5 at list price beside personalised pricing and the truth's optimal price. With
`--list-only` the world has no price exploration (every offer at list price) and no estimate: the ladder must be
the one the platform gave before pricing.

Then the twin (`nextbest.twin.job.run_twin`, unless `--twin-customers 0`): the serving policy (stage 5, pricing
with the fitted estimate) and its list-price arm (`5list`, `pricing.personalise: false`) over the same
`--twin-customers` simulated customers for `--twin-days` days, through the same engine; per arm the net value per
1,000 customers and per 1,000 decision points, the acceptance of priced offers, the mean price per product and the
fairness ratios, and the paired margin (personalised minus list) with its standard error. The 1-minute load average
is printed before and after (2 shared cores).

    uv run --frozen python -m benchmarks.bench_pricing --customers 20000 --twin-customers 20000
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trials", type=int, default=2, help="Optuna trials per champion")
    parser.add_argument("--decisions", type=int, default=2000, help="held-out decision points of the ladder")
    parser.add_argument("--home", type=Path, default=None, help="keep the home here (default: a temporary one)")
    parser.add_argument("--list-only", action="store_true", help="no price exploration, no estimate")
    parser.add_argument("--json", type=Path, default=None, help="write the tables here")
    parser.add_argument("--twin-customers", type=int, default=20_000, help="the twin's world (0: no twin)")
    parser.add_argument("--twin-days", type=int, default=90)
    parser.add_argument("--twin-warmup", type=int, default=90)
    parser.add_argument("--twin-workers", type=int, default=3, help="processes (control, 5, 5list)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import os

    load_before = os.getloadavg()[0]
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-pricing-"))
    os.environ["NEXTBEST_HOME"] = str(home)
    import nextbest.features as nbf
    from nextbest.settings import Settings
    from nextbest.simulator import SimulationConfig, simulate_world
    from training.evaluate import EvaluationOptions, run_evaluation
    from training.pipeline import champion_even_below_floor, train_model
    from training.price_response import fit_project

    settings = Settings(home=home)
    settings.ensure_dirs()
    t0 = time.perf_counter()
    config = SimulationConfig.build(
        customers=args.customers, days=args.days, seed=args.seed, price_exploration=not args.list_only
    )
    simulate_world(config, settings.world_dir)
    features = nbf.features_of(settings)
    features.build()
    features.apply()
    t_world = time.perf_counter() - t0
    for model, extra in (("churn", {}), ("nba", {})):
        champion_even_below_floor(settings, train_model(settings, model, trials=args.trials, **extra), "bench_pricing")
    t_train = time.perf_counter() - t0 - t_world
    fit = None if args.list_only else fit_project(settings)
    report = run_evaluation(settings, EvaluationOptions(decisions=args.decisions, log_mlflow=False))
    t_total = time.perf_counter() - t0
    out = {
        "customers": args.customers,
        "days": args.days,
        "seed": args.seed,
        "price_exploration": not args.list_only,
        "estimate": None
        if fit is None
        else {
            "version": fit.response.version,
            "contacts": fit.contacts,
            "coefficients": dict(fit.response.coefficients),
        },  # fmt: skip
        "seconds": {"world_and_features": t_world, "training": t_train, "total": t_total},
        "ladder": report.ladder[["stage", "value_per_1000", "conversions_per_1000"]].to_dict("records"),
        "pricing": report.pricing.to_dict("records"),
        "notes": report.notes,
    }
    if args.twin_customers > 0 and fit is not None:
        out["twin"] = run_twin_arms(settings, args)
    out["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if "twin" in out:
        print_twin_arms(out["twin"], out["load_average"], args)
    if args.json is not None:
        args.json.write_text(text)
    return 0


def run_twin_arms(settings: object, args: argparse.Namespace) -> dict:
    """The twin's serving policy (personalised) and its list-price arm on the same customers (module docstring)."""
    from nextbest.twin.job import TwinOptions, run_twin
    from nextbest.twin.run import TwinConfig

    config = TwinConfig(
        customers=args.twin_customers, days=args.twin_days, warmup_days=args.twin_warmup, seeds=(1,),
        workers=args.twin_workers,
    )  # fmt: skip
    t0 = time.perf_counter()
    options = TwinOptions(config=config, policies=("5", "5list"), log_mlflow=False, run_id="bench-pricing")
    result = run_twin(settings, options)  # type: ignore[arg-type]
    report = result.report
    return {
        "customers": args.twin_customers,
        "cohort": report.customers,
        "days": args.twin_days,
        "warmup_days": args.twin_warmup,
        "seconds": time.perf_counter() - t0,
        "list_vs_personalised": report.list_vs_personalised(),
        "pricing": report.pricing.to_dict("records"),
        "run_dir": str(result.run_dir),
    }


def print_twin_arms(twin: dict, load: dict, args: argparse.Namespace) -> None:
    side = twin["list_vs_personalised"]
    arms, margins = side["arms"], side["margins"]
    print(f"\ntwin: {twin['customers']:,} customers ({sum(twin['cohort'].values()):,} live) x {twin['days']} days "
          f"after a {twin['warmup_days']}-day warm-up, {twin['seconds']:.0f} s; load average {load['before']:.2f} -> "
          f"{load['after']:.2f}")  # fmt: skip
    for kpi in ("net_value", "net_value_per_point", "priced_acceptance", "conversion"):
        m = margins.get(kpi, {})
        print(f"  {kpi:>20}: list {arms['5list'][kpi]:,.3f}  personalised {arms['5'][kpi]:,.3f}  "
              f"margin {m.get('margin', float('nan')):+,.3f} ± {m.get('std_error', float('nan')):,.3f}")  # fmt: skip
    for arm in ("5list", "5"):
        print(
            f"  fairness min ratio {arm}: {arms[arm]['fairness_min_ratio']}; flagged: {arms[arm]['fairness_flagged']}"
        )
    for row in twin["pricing"]:
        print(f"  {row['policy']:>6} {row['action_id']:>16}: {row['offers']:>7,} offers, acceptance "
              f"{row['acceptance']:.4f}, mean price {row['mean_price']:.3f} "
              f"({row['mean_price_over_list']:.3f} x list), "
              f"margin per accept {row['margin_per_accept']:.1f}")  # fmt: skip
    net = margins.get("net_value", {})
    beats = net.get("margin", 0) > 1.96 * (net.get("std_error") or float("inf"))
    print(f"  personalised beats list price on net value beyond 1.96 SE: {'MET' if beats else 'NOT MET'}")
    print(f"  rerun: uv run --frozen python -m benchmarks.bench_pricing --customers {args.customers} "
          f"--trials {args.trials} --twin-customers {twin['customers']}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
