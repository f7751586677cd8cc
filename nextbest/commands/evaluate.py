"""CLI commands: `nextbest evaluate` (the evaluation ladder against the truth) and `nextbest experiment run|list`.

Thin commands over `training.evaluate` and `training.experiments`; they render tables and say where results went.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from nextbest.commands import project_option

if TYPE_CHECKING:
    import pandas as pd

    from training.evaluate import EvaluationReport

experiment_app = typer.Typer(help="Declarative experiments (experiments/*.yaml): run variants, compare in MLflow.")


def _render_frame(title: str, frame: pd.DataFrame, formats: dict[str, str] | None = None) -> None:
    """Print a DataFrame as a rich table; `formats` maps column -> format spec (e.g. '.1f', '.1%')."""
    import math

    from rich.table import Table

    from nextbest.console import console

    formats = formats or {}
    table = Table(title=title, title_justify="left")
    for col in frame.columns:
        numeric = frame[col].dtype.kind in "fiu"
        table.add_column(str(col), justify="right" if numeric else "left")
    for _, row in frame.iterrows():
        cells = []
        for col in frame.columns:
            value = row[col]
            if isinstance(value, float) and math.isnan(value):
                cells.append("-")
            elif col in formats and isinstance(value, int | float):
                cells.append(format(value, formats[col]))
            elif isinstance(value, float):
                cells.append(f"{value:.4f}")
            else:
                cells.append(str(value))
        table.add_row(*cells)
    console.print(table)


@experiment_app.command("list")
def experiment_list() -> None:
    """List the shipped experiment specs."""
    from nextbest.console import console
    from training.experiments import load_spec, shipped_specs

    for path in shipped_specs():
        spec = load_spec(path)
        console.print(f"[bold]{spec.name}[/]  {spec.title}  ({spec.model}, {len(spec.variants)} variants)  {path}")


@experiment_app.command("run")
def experiment_run(
    spec: str = typer.Argument(..., help="Path to a spec, or the name of one under experiments/."),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Override the trials of every variant."),
) -> None:
    """Train every variant of an experiment spec into one MLflow experiment and print the comparison table."""
    from nextbest.console import console
    from nextbest.settings import load_settings
    from training.experiments import load_spec, run_experiment

    settings = load_settings()
    loaded = load_spec(Path(spec))
    if trials is not None:
        loaded = loaded.model_copy(
            update={"trials": trials, "variants": tuple(v.model_copy(update={"trials": None}) for v in loaded.variants)}
        )
    console.print(f"[bold]experiment[/] {loaded.name}: {loaded.title} ({len(loaded.variants)} variants)")
    result = run_experiment(
        loaded, settings, on_variant=lambda v: console.print(f"  training variant [bold]{v.name}[/] ...")
    )
    table = result.table()
    _render_frame(
        f"{loaded.title} — MLflow experiment {result.experiment_name}",
        table.drop(columns=["run_id"]),
        {m: ".4f" for m in loaded.metrics},
    )
    console.print(f"runs: {', '.join(f'{r.variant}={r.run_id}' for r in result.variants)}")
    console.print(f"see them: [bold]{result.ui_command()}[/]")


def evaluate(
    decisions: int = typer.Option(2000, "--decisions", "-n", min=50, help="Held-out decision points to score."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling decision points."),
    stage3_trials: int = typer.Option(
        2, "--stage3-trials", min=1, help="Tuning trials of the no-context model trained for stage 3."
    ),
    log_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log the report to MLflow."),
    project_file: Path | None = project_option(
        "Project file (default: the settings' project); the ladder needs a world with a known truth.",
    ),
    json_path: Path | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the whole report (every table, as records) to this JSON file."
    ),
) -> None:
    """The evaluation ladder on held-out simulated traffic, scored by the simulator's truth."""
    from nextbest.commands.monitor import project_settings
    from nextbest.console import console, progress
    from nextbest.project import simulated_project
    from training.evaluate import EvaluationOptions, run_evaluation

    settings, _ = project_settings(project_file)
    simulated_project(
        settings,
        "the evaluation ladder",
        "`nextbest onboard train --project FILE` reports each model's holdout AUC and rolling-origin estimate, "
        "`nextbest scorecard --project FILE` the served traffic against its control",
    )
    with progress(transient=True) as bar:
        task = bar.add_task("evaluation ladder", total=None)
        report = run_evaluation(
            settings,
            EvaluationOptions(decisions=decisions, seed=seed, stage3_trials=stage3_trials, log_mlflow=log_mlflow),
            progress=lambda what, done, total: bar.update(
                task, completed=done, total=total, description=f"evaluation ladder: {what}"
            ),
        )
    render_report(report, settings.mlflow_tracking_uri)
    if json_path is not None:
        console.print(f"report written to {report.write_json(json_path)}")


def render_report(report: EvaluationReport, tracking_uri: str) -> None:
    """Print an evaluation report (ladder, off-policy estimates, model quality) and where it was logged.

    Public so that `nextbest demo` prints the same tables after running `training.evaluate.run_evaluation`.
    """
    from nextbest.console import console

    _render_value_tables(report)
    _render_quality_tables(report)
    for note in report.notes:
        console.print(f"[dim]note:[/] {note}")
    if report.run_id:
        console.print(
            f"logged to MLflow run [bold]{report.run_id}[/] (experiment {report.experiment_name}); "
            f"see it: mlflow ui --backend-store-uri {tracking_uri}"
        )


def _render_value_tables(report: EvaluationReport) -> None:
    """The ladder, its margins, pricing, fairness and the choice mix."""
    _render_frame(
        f"Evaluation ladder: {report.decisions} held-out decisions, truth from the simulator; value = incremental "
        "over doing nothing (organic uptake removed), net of contact costs, EUR per 1,000 decisions",
        report.ladder.rename(
            columns={
                "incremental_conversions_per_1000": "incremental_conv_per_1000",
                "contact_cost_per_1000": "cost_per_1000",
            }
        ),
        {
            "offers_per_1000": ".0f",
            "conversions_per_1000": ".1f",
            "incremental_conv_per_1000": ".1f",
            "cost_per_1000": ",.0f",
            "value_per_1000": ",.0f",
            "share_of_oracle_value": ".1%",
        },
    )
    if not report.differences.empty:
        _render_frame(
            "Margins between stages, paired on the same decisions (EUR per 1,000; z = difference / standard error)",
            report.differences,
            {"diff_per_1000": ",.0f", "std_error": ",.0f", "z": ".1f"},
        )
    if not report.pricing.empty:
        _render_frame(
            "Pricing: stage 5 at list price vs personalised inside the approved bands vs the truth's optimal price "
            "(EUR per 1,000 decisions; fairness: lowest adverse-impact ratio across age bands and protected groups)",
            report.pricing,
            {
                "value_per_1000": ",.0f",
                "acceptances_per_1000": ".1f",
                "priced_offers_per_1000": ".0f",
                "priced_acceptance": ".2%",
                "mean_price_over_list": ".3f",
                "fairness_min_ratio": ".2f",
            },
        )
    if not report.fairness.empty:
        _render_frame(
            "Fairness per stage: lowest adverse-impact ratio of the credit offer rate across age bands and protected "
            "groups (decision points as units; flagged below the project's threshold, docs/fairness.md)",
            report.fairness,
            {"min_ratio": ".2f", "credit_offer_rate": ".1%"},
        )
    if not report.choice_mix.empty:
        _render_frame(
            "What each stage shows (share of decisions by action kind)",
            report.choice_mix,
            {k: ".0%" for k in ("sales", "retention", "service", "nothing")},
        )


def _render_quality_tables(report: EvaluationReport) -> None:
    """Off-policy estimates against the truth and the models' quality beside their ceilings."""
    from training.evaluate import WITHIN_ACTION_COLUMNS

    _render_frame(
        "Off-policy estimates of stage 5 from the logs alone vs its true value of the same reward (catalogue value "
        "if accepted - contact cost, gross of organic uptake and churn; EUR per 1,000 decisions)",
        report.ope[["estimator", "estimate", "std_error", "ci95_low", "ci95_high", "truth", "truth_in_ci95"]],
        {"estimate": ",.0f", "std_error": ",.0f", "ci95_low": ",.0f", "ci95_high": ",.0f", "truth": ",.0f"},
    )
    if not report.ope_by_stage.empty:
        _render_frame(
            "Off-policy estimates of every stage from the logs alone vs the truth (EUR per 1,000 decisions)",
            report.ope_by_stage,
            {"truth": ",.0f", "ips": ",.0f", "snips": ",.0f", "dr": ",.0f", "effective_sample_size": ".1f"},
        )
    quality_columns = ["model", "version", "rows", "positives", "roc_auc", "bayes_optimal_auc", "gap_to_ceiling"]
    quality_columns += [c for c in ("ece", "ece_vs_truth", "bayes_ece") if c in report.model_quality.columns]
    quality_columns += [c for c in WITHIN_ACTION_COLUMNS if c in report.model_quality.columns]
    _render_frame(
        "Model quality beside the ceiling: pooled ROC-AUC vs Bayes-optimal AUC of the same holdout rows; ECE vs "
        "the outcomes, vs the truth, and the truth's own ECE (10 equal-mass bins); within "
        "action (value x rows weighted): Spearman vs the truth, AUC vs outcomes and its Bayes ceiling, Spearman on "
        "the ladder's candidates",
        report.model_quality[quality_columns].rename(columns=lambda c: c.replace("within_action_", "within_")),
    )
    if not report.action_quality.empty:
        _render_frame(
            "NBA model within each action (held-out contacts; Spearman also on the ladder's candidates)",
            report.action_quality,
            {"value": ",.0f", "weight": ",.0f"},
        )
    if not report.kind_calibration.empty:
        _render_frame(
            "NBA calibration per action kind (ECE vs outcomes and vs the truth, 10 equal-mass bins)",
            report.kind_calibration,
        )


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("evaluate")(evaluate)
    app.add_typer(experiment_app, name="experiment")
