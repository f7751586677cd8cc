"""CLI commands: train (tune + track + register + gate), promote (manual, audited), promotions (the gate's log).

Thin wrappers over `training.pipeline.train_model` and `training.registry`; heavy imports happen inside the
command functions so `nextbest --help` stays fast.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum

import typer


class ModelChoice(StrEnum):
    churn = "churn"
    nba = "nba"


class CalibrationChoice(StrEnum):
    platt = "platt"
    isotonic = "isotonic"


def _quiet_mlflow() -> None:
    # Artifact download bars would interleave with our progress bar; the CLI prints where results went instead.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def train(
    model: ModelChoice = typer.Argument(..., help="Which model to train: churn or nba."),
    trials: int | None = typer.Option(None, "--trials", "-n", min=1, help="Optuna trials (default: settings)."),
    timeout: float | None = typer.Option(None, "--timeout", min=1, help="Stop tuning after this many seconds."),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna storage URI (default: settings; e.g. postgresql+psycopg2://...)."
    ),
    study_name: str | None = typer.Option(
        None, "--study-name", help="Optuna study (default: model + data fingerprint; same name resumes)."
    ),
    horizon_days: int | None = typer.Option(None, "--horizon-days", min=1, help="Churn label horizon H in days."),
    seed: int | None = typer.Option(None, "--seed", help="Sampler/booster seed (default: settings)."),
    calibration: CalibrationChoice = typer.Option(CalibrationChoice.platt, help="Probability calibration method."),
    register: bool = typer.Option(True, "--register/--no-register", help="Register the model as a new version."),
    promote: bool = typer.Option(True, "--gate/--no-gate", help="Run the promotion gate after registering."),
    threads: int = typer.Option(1, "--threads", min=1, help="XGBoost threads (1 is fastest on a busy shared host)."),
    purge_days: int = typer.Option(
        0, "--purge-days", min=0, help="Drop rows this many days before each split boundary (churn: the horizon)."
    ),
) -> None:
    """Tune, train, calibrate and log a model to MLflow; register it as `challenger` and run the promotion gate."""
    from rich.table import Table

    from nextbest.console import console, progress
    from nextbest.settings import load_settings
    from training.pipeline import train_model
    from training.tune import TuningConfig

    _quiet_mlflow()
    settings = load_settings()
    n_trials = trials or settings.training.trials
    with progress(transient=True) as bar:
        task = bar.add_task(f"tuning {model.value}", total=n_trials)
        result = train_model(
            settings,
            model.value,
            n_trials,
            timeout=timeout,
            storage=storage,
            study_name=study_name,
            horizon_days=horizon_days,
            seed=seed,
            register=register,
            promote=promote,
            calibration=calibration.value,
            config=TuningConfig(nthread=threads),
            purge_days=purge_days,
            progress=lambda done, total: bar.update(task, completed=done),
        )
    table = Table(title=f"{model.value}: test split (most recent {int(result.metrics.get('test_rows', 0))} rows)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    shown = ("roc_auc", "pr_auc", "log_loss", "ece", "lift_top_decile", "base_rate")
    for key in shown:
        table.add_row(key, f"{result.metrics.get(f'test_{key}', float('nan')):.4f}")
    for key in ("policy_value_snips_eur", "logging_value_eur"):
        if key in result.metrics:
            table.add_row(key, f"{result.metrics[key]:.2f}")
    console.print(table)
    console.print(
        f"study [bold]{result.study_name}[/] ({result.trials_run} trials this run), best: {result.best_params}"
    )
    console.print(f"MLflow run {result.run_id} in experiment {result.experiment_name}")
    if result.version is not None:
        verdict = "[green]promoted to champion[/]" if result.promoted else "[yellow]not promoted[/]"
        reason = f": {result.decision.reason}" if result.decision else ""
        console.print(f"registered [bold]{model.value}[/] version {result.version} (challenger), {verdict}{reason}")
    console.print(f"see it: mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}")


def promote_version(
    model: ModelChoice = typer.Argument(..., help="Registered model: churn or nba."),
    version: str = typer.Argument(..., help="Version to make champion."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the promotion log)."),
) -> None:
    """Make a version champion by hand (rollback, new feature set); recorded like the gate's decisions."""
    from nextbest.console import console
    from nextbest.settings import load_settings
    from training.registry import promote

    _quiet_mlflow()
    decision = promote(load_settings(), model.value, version, reason)
    console.print(f"{model.value} version {version} is champion (was {decision.champion_version or 'none'})")


def promotions(
    model: ModelChoice | None = typer.Argument(None, help="Only this model."),
    as_json: bool = typer.Option(False, "--json", help="Print raw JSON lines."),
) -> None:
    """Show the promotion log: every gate decision, promoted or not, with who, when, why and both metrics."""
    from rich.table import Table

    from nextbest.console import console
    from nextbest.settings import load_settings
    from training.registry import promotion_log_path, read_promotion_log

    settings = load_settings()
    records = read_promotion_log(settings, model.value if model else None)
    if as_json:
        for record in records:
            console.print_json(json.dumps(record))
        return
    table = Table(title=f"promotion log ({promotion_log_path(settings)})")
    for col in ("when", "model", "challenger", "champion", "promoted", "AUC (chall/champ)", "reason"):
        table.add_column(col)
    for r in records:
        c, k = r.get("challenger_metrics") or {}, r.get("champion_metrics") or {}
        auc = f"{c.get('roc_auc') or float('nan'):.4f} / {k.get('roc_auc') or float('nan'):.4f}"
        table.add_row(
            r["when"], r["model"], r["challenger_version"], r.get("champion_version") or "-",
            "yes" if r["promoted"] else "no", auc, r["reason"],
        )  # fmt: skip
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("train")(train)
    app.command("promote")(promote_version)
    app.command("promotions")(promotions)
