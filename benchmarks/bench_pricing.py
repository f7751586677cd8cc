"""List price vs personalised pricing on the evaluation ladder, end to end (issue 18; docs/pricing.md).

In a fresh home: simulate the bank with the logging policy's price exploration (every priced contact at a random
price on the customer's band), build and apply the features, train and promote the churn and NBA champions, fit
the price-response estimate from the logged prices (`nextbest pricing fit`), and run the evaluation ladder, whose
pricing table puts stage 5 at list price beside personalised pricing and the truth's optimal price. With
`--list-only` the world has no price exploration (every offer at list price) and no estimate: the ladder must be
the one the platform gave before pricing.

    uv run --frozen python -m benchmarks.bench_pricing --customers 20000
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import os

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
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if args.json is not None:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
