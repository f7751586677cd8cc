"""Berka's loan-default model through the shared trainer: time split vs stratified split, side by side.

    uv run --frozen python -m benchmarks.bench_onboarding_split [--trials 10] [--seeds 7,8,9]

The default model's rows are 354 independent loans labelled by their final status (30 bad). The trainer's time
split keeps the most recent loans for validation and test -- the 1998 loans, which had the least time to go bad --
so early stopping, calibration and the promotion gate saw one or two bad loans. This runs the same training
(`nextbest.jobs.onboard.train`, the same Optuna trials, no registration) with `split: time` and
`split: stratified` for each seed, and prints per run: the split sizes and positives, the trainer's validation and
test ROC-AUC, and the tuned recipe's repeated-CV AUC (the config's honest estimate: the study's best parameters
refit on 5-fold x 3). Writes `<home>/bench/onboarding_split.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path

from nextbest.settings import REPO_ROOT, Settings, load_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seeds", default="7,8,9", help="comma-separated study/split seeds")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs/berka.yaml")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from nextbest.features.project import feature_project
    from nextbest.jobs import onboard as pipeline
    from nextbest.onboarding.config import load_config
    from nextbest.onboarding.datasets import LABEL, build_training_set
    from nextbest.project import load_project
    from training.datasets import split_training_frame

    base = load_settings()
    settings = Settings(home=base.home / "bench" / "onboarding_split")
    os.environ.setdefault("NEXTBEST_BERKA_DIR", str(REPO_ROOT.parent / "shared/data/berka"))
    config = load_config(args.config)
    t0 = time.perf_counter()
    features = feature_project(load_project(args.config), settings)
    features.build()
    features.apply()
    print(f"features of {config.project} built and applied in {time.perf_counter() - t0:.1f} s", flush=True)
    model = config.model("berka_default")
    training_set = build_training_set(config, settings, model.name)

    rows = []
    header = f"{'split':<11} {'seed':>4}  {'train (pos)':>11} {'valid (pos)':>11} {'test (pos)':>10}"
    header += f"  {'valid AUC':>9} {'test AUC':>8} {'rounds':>6}  {'tuned CV AUC':>16}"
    print(header)
    for split in ("time", "stratified"):
        variant = config.model_copy(
            update={"models": [m.model_copy(update={"split": split}) if m is model else m for m in config.models]}
        )
        for seed in (int(s) for s in args.seeds.split(",")):
            parts = split_training_frame(
                training_set.frame,
                training_set.timestamp,
                test_fraction=model.validation.test_fraction,
                method=split,
                seed=seed,
            )
            result = pipeline.train(variant, settings, model.name, trials=args.trials, seed=seed, register=False)
            tuned = next(cv for cv in result.validation if cv.recipe == "tuned").summary()
            m = result.train.metrics
            row = {
                "split": split,
                "seed": seed,
                **{
                    f"{name}_{what}": int(v)
                    for name, part in (("train", parts.train), ("valid", parts.valid), ("test", parts.test))
                    for what, v in (("rows", len(part)), ("positives", part[LABEL].sum()))
                },
                "valid_roc_auc": m.get("valid_roc_auc"),
                "test_roc_auc": m.get("test_roc_auc"),
                "best_iteration": m.get("best_iteration"),
                "cv_tuned_auc_mean": tuned["roc_auc_mean"],
                "cv_tuned_auc_std": tuned["roc_auc_std"],
            }
            rows.append(row)
            print(
                f"{split:<11} {seed:>4}  {row['train_rows']:>6} ({row['train_positives']:>2}) "
                f"{row['valid_rows']:>6} ({row['valid_positives']:>2}) "
                f"{row['test_rows']:>5} ({row['test_positives']:>2})"
                f"  {row['valid_roc_auc']:>9.3f} {row['test_roc_auc']:>8.3f} {row['best_iteration']:>6.0f}"
                f"  {row['cv_tuned_auc_mean']:.3f} +- {row['cv_tuned_auc_std']:.3f}",
                flush=True,
            )
    for split in ("time", "stratified"):
        cv = [r["cv_tuned_auc_mean"] for r in rows if r["split"] == split]
        test = [r["test_roc_auc"] for r in rows if r["split"] == split]
        print(
            f"{split}: median tuned CV AUC {statistics.median(cv):.3f}, median trainer test AUC "
            f"{statistics.median(test):.3f} over {len(cv)} seed(s)"
        )
    out = settings.home.parent / "onboarding_split.json"
    out.write_text(json.dumps({"trials": args.trials, "runs": rows}, indent=1))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
