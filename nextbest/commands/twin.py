"""CLI command: twin (`nextbest twin [--customers N] [--days N] [--warmup N] [--seeds 1,2,3]
[--policies 1,2,3,5,5list,oracle] [--policy FILE] [--candidate-model nba=3] [--serving-model nba=2] [--workers N]`).

A thin shell over `nextbest.twin.job.run_twin`: the policies over the same simulated customers for N days, the world
reacting to each; one table of the KPIs per policy side by side (each with its standard error and, paired on the
same customers, its margin over the serving policy and over the no-contact control), and with `--policy` the
what-if verdict: which of the candidate and the current policy wins on net value and on each KPI. See docs/twin.md.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from nextbest.commands import project_option

if TYPE_CHECKING:
    from nextbest.twin.job import TwinResult
    from nextbest.twin.report import TwinReport


def _fmt(value: float, scale: float) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if scale >= 1000:  # per 1,000: a small count keeps one decimal (conversions 5.3, complaints 0.4)
        return f"{value:,.1f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3f}"


def _signed(margin: dict[str, Any] | None, scale: float) -> str:
    if margin is None or margin["margin"] is None or not math.isfinite(margin["margin"]):
        return ""
    if margin["std_error"] is None or not math.isfinite(margin["std_error"]):
        return ""
    m, se = margin["margin"], margin["std_error"]
    text = f"{'+' if m >= 0 else '-'}{_fmt(abs(m), scale)} ± {_fmt(se, scale)}"
    return f"[bold]{text}[/]" if margin.get("winner") == margin["policy"] else text


def print_twin(result: TwinResult) -> None:
    """The KPI table (policies side by side), the what-if verdict, and where the report went."""
    from rich.markup import escape
    from rich.table import Table

    from nextbest.console import console
    from nextbest.twin.report import CANDIDATE, LIST_ARM, SERVING
    from nextbest.twin.scorecard import CONTROL, KPIS

    report = result.report
    p = report.params
    seeds = len(report.customers)
    customers = sum(report.customers.values())
    names = [x["name"] for x in report.policies]
    table = Table(
        title=(
            f"Policy twin: {p['customers']:,} customers x {p['days']} days after a {p['warmup_days']}-day warm-up, "
            f"{seeds} seed{'s' * (seeds > 1)} ({customers:,} customers scored)"
        ),
        title_justify="left",
        caption=(
            "value ± standard error; Δ: minus the serving policy (stage 5) or the no-contact control, paired on the "
            "same customers (bold: better beyond 1.96 SE)"
            + ("; seeds: \\[min, max] of single seeds" if seeds > 1 else "")
        ),
    )
    table.add_column("KPI", justify="left")
    for name in names:
        table.add_column(escape(report.labels[name]), justify="right")
    for kpi in KPIS:
        rows: dict[str, list[str]] = {"value": [], "serving": [], "list": [], "control": [], "seeds": []}
        for name in names:
            row = report.kpis[(report.kpis["policy"] == name) & (report.kpis["kpi"] == kpi.name)].iloc[0]
            rows["value"].append(f"{_fmt(row['value'], kpi.scale)} ± {_fmt(row['std_error'], kpi.scale)}")
            vs_serving = name not in (SERVING, CONTROL) and SERVING in names
            rows["serving"].append(_signed(report.margin(name, SERVING, kpi.name), kpi.scale) if vs_serving else "")
            vs_list = name == SERVING and LIST_ARM in names
            rows["list"].append(_signed(report.margin(name, LIST_ARM, kpi.name), kpi.scale) if vs_list else "")
            vs_control = name != CONTROL and kpi.name not in ("incremental_value", "net_value")
            rows["control"].append(_signed(report.margin(name, CONTROL, kpi.name), kpi.scale) if vs_control else "")
            rows["seeds"].append(f"[{_fmt(row['seed_min'], kpi.scale)}, {_fmt(row['seed_max'], kpi.scale)}]")
        table.add_row(f"[bold]{escape(kpi.label)}[/] [dim]{escape(kpi.unit)}[/]", *rows["value"])
        for key, label in (
            ("serving", "  Δ serving (5)"),
            ("list", "  Δ list price (5 - 5list)"),
            ("control", "  Δ control"),
            ("seeds", "  seeds"),
        ):
            if any(rows[key]) and (key != "seeds" or seeds > 1):
                table.add_row(f"[dim]{label}[/]", *(f"[dim]{c}[/]" if key == "seeds" else c for c in rows[key]))
        table.rows[-1].end_section = True
    console.print(table)
    if not report.verdict.empty:
        _print_verdict(report, CANDIDATE, SERVING)
    if report.fairness:
        _print_fairness(report)
    if not report.pricing.empty:
        _print_pricing(report)
    for note in report.notes:
        console.print(f"[dim]note:[/] {escape(note)}")
    console.print(f"finished in {result.seconds:.0f}s; report {result.run_dir / 'twin.json'}")
    console.print(f"  plot           {result.run_dir / 'value_over_time.png'}")
    if result.mlflow_run_id:
        console.print(f"  MLflow run     {result.mlflow_run_id} (experiment twin)")


def _print_verdict(report: TwinReport, candidate: str, serving: str) -> None:
    from rich.table import Table

    from nextbest.console import console
    from nextbest.twin.scorecard import KPIS

    by_name = {k.name: k for k in KPIS}
    table = Table(title="What-if: the candidate against the current policy, paired on the same customers")
    for col in ("KPI", "current", "candidate", "margin ± SE", "z", "wins"):
        table.add_column(col, justify="left" if col in ("KPI", "wins") else "right")
    for row in report.verdict.to_dict("records"):
        kpi = by_name[row["kpi"]]
        winner = row["winner"] if isinstance(row["winner"], str) else None
        wins = {candidate: "candidate", serving: "current"}.get(winner or "", "no difference" if kpi.better else "-")
        z = row["z"]
        table.add_row(
            kpi.label,
            _fmt(report.value(serving, kpi.name), kpi.scale),
            _fmt(report.value(candidate, kpi.name), kpi.scale),
            _signed({**row, "winner": None}, kpi.scale),
            "-" if z is None or not math.isfinite(z) else f"{z:+.1f}",
            wins,
        )
    console.print(table)
    net = report.verdict[report.verdict["kpi"] == "net_value"].iloc[0]
    scale = by_name["net_value"].scale
    if report.winner is None:
        console.print(
            f"verdict: [bold]no significant difference[/] on net value ({net['margin']:+,.0f} ± "
            f"{net['std_error']:,.0f} EUR per 1,000 customers, candidate minus current; more customers or seeds narrow "
            "it)"
        )
    else:
        who = "the candidate" if report.winner == candidate else "the current policy"
        console.print(
            f"verdict: [bold]{who} wins on net value[/] by {_fmt(abs(net['margin']), scale)} ± "
            f"{_fmt(net['std_error'], scale)} EUR per 1,000 customers (z {net['z']:+.1f})"
        )


def _print_fairness(report: TwinReport) -> None:
    """Per policy the lowest adverse-impact ratio of its credit offers (and prices) across age bands, what is
    flagged, and the what-if gate's decision on the candidate."""
    from rich.markup import escape
    from rich.table import Table

    from nextbest.console import console

    threshold = next(iter(report.fairness.values())).threshold
    table = Table(title=f"Fairness: lowest adverse-impact ratio per policy (flagged below {threshold:.2f})")
    for col in ("policy", "lowest ratio", "flagged"):
        table.add_column(col, justify="left" if col != "lowest ratio" else "right")
    for name, check in report.fairness.items():
        ratio = check.min_ratio
        flagged = "; ".join(check.reasons()) or "-"
        table.add_row(escape(report.labels.get(name, name)), "-" if not math.isfinite(ratio) else f"{ratio:.2f}",
                      escape(flagged))  # fmt: skip
    console.print(table)
    if report.gate == "refused":
        console.print("what-if gate: [bold red]candidate REFUSED[/] (fairness): " + escape("; ".join(report.refusals)))
    elif report.gate == "passed":
        console.print("what-if gate: candidate passes the fairness check")


def _print_pricing(report: TwinReport) -> None:
    """Per policy and priced product: delivered offers, acceptance, mean price (over list), margin per acceptance;
    with the list-price arm, personalised minus list on net value."""
    from rich.markup import escape
    from rich.table import Table

    from nextbest.console import console
    from nextbest.twin.report import LIST_ARM, SERVING

    table = Table(title="Pricing: delivered priced offers per policy and product (the world's acceptance at the price)")
    for col in ("policy", "product", "offers", "accepted", "acceptance", "mean price", "over list", "margin / accept"):
        table.add_column(col, justify="left" if col in ("policy", "product") else "right")
    for row in report.pricing.to_dict("records"):
        margin = row["margin_per_accept"]
        table.add_row(
            escape(report.labels.get(row["policy"], row["policy"])),
            row["action_id"],
            f"{row['offers']:,}",
            f"{row['accepted']:,}",
            f"{row['acceptance']:.4f}",
            f"{row['mean_price']:.3f}",
            f"{row['mean_price_over_list']:.3f}",
            "-" if not math.isfinite(margin) else f"{margin:,.1f}",
        )
    console.print(table)
    net = report.margin(SERVING, LIST_ARM, "net_value")
    if net is not None:
        per_point = report.margin(SERVING, LIST_ARM, "net_value_per_point") or {}
        console.print(
            f"personalised minus list price: net value {net['margin']:+,.0f} ± {net['std_error']:,.0f} EUR per 1,000 "
            f"customers ({per_point.get('margin', math.nan):+,.1f} ± {per_point.get('std_error', math.nan):,.1f} per "
            f"1,000 decision points), paired on the same customers"
        )


def _ints(text: str, what: str) -> tuple[int, ...]:
    from nextbest.errors import ConfigError

    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a comma-separated list of integers (e.g. 1,2,3)") from None
    if not values:
        raise ConfigError(f"{what}: give at least one (e.g. 1,2,3)")
    if len(set(values)) != len(values):
        raise ConfigError(f"{what}: {text!r} repeats a value")
    return values


def twin(
    customers: int = typer.Option(3_000, "--customers", "-c", help="Customers of each seed's world."),
    days: int = typer.Option(90, "--days", "-d", help="Simulated days each policy lives."),
    warmup: int = typer.Option(90, "--warmup", help="Days the world lives under the logging policy first."),
    seeds: str = typer.Option("1", "--seeds", help="World seeds, comma-separated (e.g. 1,2,3)."),
    policies: str | None = typer.Option(
        None,
        "--policies",
        help="Policies: ladder stages 1,2,3,5 (5 = serving), 5list (5 at list price), oracle "
        "[1,2,3,5,oracle, and 5list when the serving policy prices personally].",
    ),
    policy_file: Path | None = typer.Option(
        None, "--policy", metavar="FILE", help="What-if: a candidate policy file against the current one."
    ),
    candidate_model: list[str] = typer.Option(
        [], "--candidate-model", metavar="MODEL=VERSION", help="What-if: a model version the candidate serves."
    ),
    serving_model: list[str] = typer.Option(
        [], "--serving-model", metavar="MODEL=VERSION", help="The serving policy's model version [champion]."
    ),
    workers: int = typer.Option(1, "--workers", "-w", help="Processes the policies of a seed run in."),
    stage3_trials: int = typer.Option(2, "--stage3-trials", help="Tuning trials of stage 3's no-context model."),
    run_id: str | None = typer.Option(None, "--run-id", help="The run folder's name under <home>/twin/ [UTC time]."),
    log_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log the report to MLflow."),
    project_file: Path | None = project_option("Project file (default: the settings' project); a simulated bank."),
) -> None:
    """The policy twin: policies over the same simulated customers for N days, the world reacting to each."""
    from pydantic import ValidationError

    from nextbest.commands.monitor import project_settings
    from nextbest.console import console, progress
    from nextbest.errors import ConfigError
    from nextbest.twin.job import TwinOptions, check_options, parse_versions, run_twin, twin_project
    from nextbest.twin.run import TwinConfig

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        config = TwinConfig(
            customers=customers,
            days=days,
            warmup_days=warmup,
            seeds=_ints(seeds, "--seeds"),
            workers=workers,
        )
        options = TwinOptions(
            config=config,
            policies=None if policies is None else tuple(x for x in policies.split(",") if x.strip()),
            candidate_policy=policy_file,
            candidate_versions=parse_versions(candidate_model, "--candidate-model"),
            serving_versions=parse_versions(serving_model, "--serving-model"),
            stage3_trials=stage3_trials,
            log_mlflow=log_mlflow,
            run_id=run_id,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = {"warmup_days": "--warmup", "stage3_trials": "--stage3-trials"}.get(
            str(err["loc"][-1]), f"--{str(err['loc'][-1]).replace('_', '-')}"
        )
        raise ConfigError(f"{flag}: {err['msg']} (got {err.get('input')!r})") from None
    if options.policies is not None and not options.policies:
        raise ConfigError("--policies: name at least one (1, 2, 3, 5, 5list, oracle)")
    settings, _ = project_settings(project_file)
    twin_project(settings)  # a bank's own tables: one line, before anything runs
    check_options(options)
    with progress() as bar:
        tasks: dict[str, Any] = {}

        def say(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        console.print(
            f"[bold]twin[/] {config.customers:,} customers x {config.days} days "
            f"(+{config.warmup_days} warm-up), seeds {','.join(map(str, config.seeds))}"
        )
        result = run_twin(settings, options, progress=say)
    print_twin(result)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("twin")(twin)
