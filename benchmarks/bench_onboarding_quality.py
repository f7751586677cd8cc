"""Does the platform's tuned recipe reach a plain XGBoost? Berka and the flat-table examples, side by side.

    uv run --frozen python -m benchmarks.bench_onboarding_quality [--trials 10] [--projects berka,flat_contacts]

For every model of every project: the onboarding job (`nextbest.jobs.onboard.train`, no registration) tunes the
model with its Optuna study, and its validation scheme (repeated stratified CV, or rolling origin by period)
fits on the SAME folds the platform's recipe with the tuned parameters (early stopping, refit, calibration: the
registered model's recipe) and a plain XGBoost (library defaults, 100 rounds, no tuning). Printed per model: the
folds, both AUCs as mean +- standard deviation over the folds, the mean paired difference (tuned - plain) with
its standard error over the folds, the trainer's holdout (the registered model's own AUC with its 95% bootstrap
interval, and the plain XGBoost on the same rows), and MET / NOT MET: MET when the tuned recipe is at least the
plain XGBoost on the folds (mean paired difference >= -0.005, rounding level). Writes
`<home>/bench/onboarding_quality.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from nextbest.settings import REPO_ROOT, Settings, load_settings

PROJECTS = {
    "berka": REPO_ROOT / "configs/berka.yaml",
    "flat_contacts": REPO_ROOT / "configs/examples/flat_contacts.yaml",
    "flat_calls": REPO_ROOT / "configs/examples/flat_calls.yaml",
    "flat_customers": REPO_ROOT / "configs/examples/flat_customers.yaml",
}
TOLERANCE = 0.005


def _paired(tuned: Any, plain: Any) -> tuple[float, float]:
    """Mean (tuned - plain) AUC over the folds both scored, and its standard error."""
    pairs = [
        (t.roc_auc - p.roc_auc)
        for t, p in zip(tuned.folds, plain.folds, strict=True)
        if np.isfinite(t.roc_auc) and np.isfinite(p.roc_auc)
    ]
    diff = np.array(pairs)
    se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("nan")
    return float(diff.mean()) if diff.size else float("nan"), se


def _model_row(project: str, name: str, result: Any, seconds: float) -> dict[str, Any]:
    cv = {c.recipe: c for c in result.validation}
    tuned, plain = cv["tuned"].summary(), cv["plain_xgboost"].summary()
    diff, se = _paired(cv["tuned"], cv["plain_xgboost"])
    m = result.train.metrics
    return {
        "project": project,
        "model": name,
        "rows": result.rows,
        "positives": result.positives,
        "validation": cv["tuned"].method + (f" by {cv['tuned'].period}" if cv["tuned"].period else ""),
        "folds": int(tuned["n_folds"]),
        "tuned_auc_mean": tuned["roc_auc_mean"],
        "tuned_auc_std": tuned["roc_auc_std"],
        "plain_auc_mean": plain["roc_auc_mean"],
        "plain_auc_std": plain["roc_auc_std"],
        "paired_diff": diff,
        "paired_diff_se": se,
        "holdout_auc": m.get("test_roc_auc"),
        "holdout_ci": [m.get("test_roc_auc_ci_low"), m.get("test_roc_auc_ci_high")],
        "holdout_plain_auc": m.get("baseline_test_roc_auc"),
        "met": bool(np.isfinite(diff) and diff >= -TOLERANCE),
        "seconds": seconds,
    }


def _print(row: dict[str, Any]) -> None:
    low, high = row["holdout_ci"]
    print(
        f"{row['project']:<15} {row['model']:<17} {row['rows']:>6} ({row['positives']:>4})  "
        f"{row['validation']:<22} {row['folds']:>3}  "
        f"{row['tuned_auc_mean']:.3f} +- {row['tuned_auc_std']:.3f}  {row['plain_auc_mean']:.3f} +- "
        f"{row['plain_auc_std']:.3f}  {row['paired_diff']:+.3f} +- {row['paired_diff_se']:.3f}  "
        f"{row['holdout_auc']:.3f} [{low:.3f}, {high:.3f}] {row['holdout_plain_auc']:.3f}  "
        f"{'MET' if row['met'] else 'NOT MET':<7} {row['seconds']:>5.0f} s",
        flush=True,
    )


def run_project(name: str, path: Path, home: Path, trials: int, seed: int) -> list[dict[str, Any]]:
    """Build and apply one project in its own home, then tune and validate each of its models."""
    from nextbest.features.project import feature_project
    from nextbest.jobs import onboard as job
    from nextbest.project import load_project

    project = load_project(path)
    settings = Settings(home=home / name, project=path)
    features = feature_project(project, settings)
    features.build()
    features.apply()
    rows = []
    assert project.tables is not None
    for model in project.model_names:
        t0 = time.perf_counter()
        result = job.train(project.tables, settings, model, trials=trials, seed=seed, register=False)
        rows.append(_model_row(name, model, result, time.perf_counter() - t0))
        _print(rows[-1])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--projects", default="berka,flat_contacts,flat_calls,flat_customers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("NEXTBEST_BERKA_DIR", str(REPO_ROOT.parent / "shared/data/berka"))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    home = load_settings().home / "bench" / "onboarding_quality"
    shutil.rmtree(home, ignore_errors=True)  # fresh studies: every run tunes with exactly --trials trials
    header = f"{'project':<15} {'model':<17} {'rows (pos)':>13}  {'validation':<22} {'n':>3}  {'tuned recipe':<14}  "
    header += f"{'plain XGBoost':<14}  {'tuned - plain':<14}  {'holdout AUC [95%] plain':<29} {'verdict':<7} time"
    print(header)
    started = time.perf_counter()
    rows = [
        row
        for name in args.projects.split(",")
        for row in run_project(name, PROJECTS[name], home, args.trials, args.seed)
    ]
    met = sum(r["met"] for r in rows)
    print(f"{met} of {len(rows)} models MET (tuned recipe >= plain XGBoost - {TOLERANCE} on the same folds), "
          f"{time.perf_counter() - started:.0f} s, {args.trials} trials each")  # fmt: skip
    out = home.parent / "onboarding_quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"trials": args.trials, "seed": args.seed, "models": rows}, indent=1, default=float))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
