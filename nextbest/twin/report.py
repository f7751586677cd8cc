"""The twin's report: the scorecard of a run as frames, JSON, a plot and one MLflow run.

`build_report` pools every seed's ledgers per policy (`nextbest.twin.scorecard.pooled`) and computes:
- `kpis`: per policy (the control included) and KPI the value over every seed's customers, its standard error
  (for incremental and net value: paired with the control on the same customers) and the lowest and highest seed;
- `margins`: every policy minus the serving policy (stage 5, when it ran) and minus the no-contact control, per KPI,
  paired per customer, with the winner where the margin exceeds 1.96 standard errors; with the list-price arm
  (`5list`), also the serving policy minus it (personalised pricing minus list price);
- `pricing`: per policy and priced product, the delivered offers, acceptances, mean price (and over list) and the
  margin per acceptance; `list_vs_personalised` in twin.json puts `5list` and `5` side by side (value, acceptance,
  fairness ratios, paired margins);
- `verdict` (a what-if run): the candidate minus the serving policy on every KPI, and who wins on net value;
- `daily`: per policy, seed and day, the value, contact cost and the control's value (the plot's series);
- `fairness`: per policy, the fairness check of its decisions (`nextbest.fairness`: each cohort customer is a unit,
  offered credit when delivered at least one credit action over the twin's days, grouped by the age band at the
  twin's start; mean prices of the priced offers the engine made), and `gate` (a what-if run): the what-if gate refuses
  the candidate when it has an adverse-impact ratio below the project's threshold that the serving policy does not
  have as low (`nextbest.fairness.gate_refusals`); the refusal is recorded in twin.json, as an MLflow tag and in
  `<home>/twin/gate.jsonl` with who and when.
`write_report` puts `twin.json`, `kpis.csv`, `margins.csv` and `value_over_time.png` (cumulative net value per 1,000
customers over the twin's days, per policy, mean of the seeds) in the run folder; `log_report` logs the same as one
MLflow run (`<prefix>-twin`: params, a metric per policy and KPI, the files as artefacts).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nextbest.fairness import FairnessReport, FairnessSpec, fairness_report, gate_refusals, group_frame, plain
from nextbest.twin.scorecard import CONTROL, KPIS, Ledger, PolicyData, compare, kpi_table, pooled

if TYPE_CHECKING:
    from nextbest.settings import Settings
    from nextbest.twin.job import TwinOptions
    from nextbest.twin.policies import TwinPolicy
    from nextbest.twin.run import SeedResult

logger = logging.getLogger(__name__)

SERVING = "5"
CANDIDATE = "candidate"
LIST_ARM = "5list"


@dataclass
class TwinReport:
    """A twin run's scorecard (see the module docstring)."""

    params: dict[str, Any]
    policies: list[dict[str, str]]  # name, label, source (policy file and the scorers of its slots)
    kpis: pd.DataFrame
    margins: pd.DataFrame
    verdict: pd.DataFrame
    daily: pd.DataFrame
    customers: dict[int, int]  # cohort size per seed
    timings: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: per policy (not the control): its fairness check
    fairness: dict[str, FairnessReport] = field(default_factory=dict)
    #: the what-if gate's refusal reasons for the candidate (empty: not refused, or no candidate)
    refusals: list[str] = field(default_factory=list)
    #: per policy and priced product: delivered offers, acceptances, mean price (and over list), margin per accept
    pricing: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def gate(self) -> str | None:
        """The what-if gate's decision on the candidate: 'refused', 'passed', or None (no candidate)."""
        if CANDIDATE not in self.fairness:
            return None
        return "refused" if self.refusals else "passed"

    @property
    def labels(self) -> dict[str, str]:
        return {p["name"]: p["label"] for p in self.policies}

    def value(self, policy: str, kpi: str) -> float:
        """One KPI of one policy (NaN when it is not in the report)."""
        row = self.kpis[(self.kpis["policy"] == policy) & (self.kpis["kpi"] == kpi)]
        return float(row["value"].iloc[0]) if len(row) else math.nan

    def margin(self, policy: str, baseline: str, kpi: str) -> dict[str, Any] | None:
        """`policy` minus `baseline` on `kpi` (margin, std_error, z, winner), or None when not compared."""
        m = self.margins
        row = m[(m["policy"] == policy) & (m["baseline"] == baseline) & (m["kpi"] == kpi)]
        return row.iloc[0].to_dict() if len(row) else None

    @property
    def winner(self) -> str | None:
        """A what-if's winner on net value: the candidate, the serving policy, or None (within 1.96 SE)."""
        if self.verdict.empty:
            return None
        row = self.verdict[self.verdict["kpi"] == "net_value"]
        winner = row["winner"].iloc[0] if len(row) else None
        return None if winner is None or (isinstance(winner, float) and math.isnan(winner)) else str(winner)

    def list_vs_personalised(self) -> dict[str, Any] | None:
        """The serving policy (personalised prices) beside its list-price arm: value, acceptance, prices and the
        fairness ratios of each, and the paired margins (personalised minus list); None when `5list` did not run."""
        if LIST_ARM not in self.labels or SERVING not in self.labels:
            return None
        kpis = ("net_value", "net_value_per_point", "conversion", "acceptance", "priced_acceptance")
        arms = {}
        for name in (LIST_ARM, SERVING):
            check = self.fairness.get(name)
            arms[name] = {
                **{k: plain(self.value(name, k)) for k in kpis},
                "fairness_min_ratio": plain(check.min_ratio) if check is not None else None,
                "fairness_flagged": check.reasons() if check is not None else [],
            }
        margins = {k: self.margin(SERVING, LIST_ARM, k) for k in kpis}
        return {"personalised": SERVING, "list": LIST_ARM, "arms": arms,
                "margins": {k: {kk: plain(v) for kk, v in m.items()} for k, m in margins.items() if m is not None},
                "fairness_ratios": _fairness_side_by_side(self.fairness, (LIST_ARM, SERVING))}  # fmt: skip

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow: `<policy>.<kpi>` and its standard error."""
        out = {}
        for row in self.kpis.itertuples(index=False):
            name = "control" if row.policy == CONTROL else f"policy_{row.policy}"
            for key, value in ((row.kpi, row.value), (f"{row.kpi}_se", row.std_error)):
                if np.isfinite(value):
                    out[f"{name}.{key}"] = float(value)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "policies": self.policies,
            "customers_per_seed": {str(k): v for k, v in self.customers.items()},
            "kpis": _records(self.kpis),
            "margins": _records(self.margins),
            "verdict": _records(self.verdict),
            "winner_on_net_value": self.winner,
            "gate": {"candidate": self.gate, "reasons": self.refusals},
            "fairness": {name: report.to_dict() for name, report in self.fairness.items()},
            "pricing": _records(self.pricing),
            "list_vs_personalised": self.list_vs_personalised(),
            "kpi_definitions": [{"kpi": k.name, "label": k.label, "unit": k.unit, "better": k.better} for k in KPIS],
            "timings": self.timings,
            "notes": self.notes,
            "seconds": self.seconds,
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts, NaN as None (valid JSON)."""
    return [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _fairness_side_by_side(checks: dict[str, FairnessReport], names: Sequence[str]) -> list[dict[str, Any]]:
    """Every (attribute, metric, product, group) of the arms' fairness checks, one row with each arm's ratio."""
    frames = []
    for name in names:
        check = checks.get(name)
        if check is None or check.rows.empty:
            continue
        keys = ["attribute", "metric", "product", "group"]
        rows = check.rows.reindex(columns=[*keys, "units", "value", "ratio", "flagged"]).copy()
        rows["product"] = rows["product"].fillna("")
        frames.append(rows.set_index(keys).add_prefix(f"{name}."))
    if not frames:
        return []
    joined = pd.concat(frames, axis=1).reset_index()
    return [{k: plain(v) for k, v in row.items()} for row in joined.to_dict("records")]


def pricing_table(by_policy: dict[str, list[Ledger]]) -> pd.DataFrame:
    """Per policy and priced product, over every seed: the delivered priced offers, their acceptances and
    acceptance, the mean price and mean price over list, and the margin credited per acceptance."""
    rows = []
    for name, ledgers in by_policy.items():
        offered = [f for lg in ledgers for f in lg.offered]
        if not offered:
            continue
        frame = pd.concat(offered, ignore_index=True)
        frame["over_list"] = frame["price"] / frame["list_price"]
        for product, f in frame.groupby("action_id", sort=True):
            accepted = int(f["accepted"].sum())
            rows.append(
                {
                    "policy": name,
                    "action_id": str(product),
                    "offers": len(f),
                    "accepted": accepted,
                    "acceptance": accepted / len(f),
                    "mean_price": float(f["price"].mean()),
                    "mean_price_over_list": float(f["over_list"].mean()),
                    "margin_per_accept": float(f.loc[f["accepted"], "margin"].mean()) if accepted else math.nan,
                }
            )
    return pd.DataFrame(rows)


def build_report(
    options: TwinOptions,
    policies: Sequence[TwinPolicy],
    seeds: Sequence[SeedResult],
    notes: Sequence[str] = (),
    seconds: float = 0.0,
    fairness: FairnessSpec = FairnessSpec(),
) -> TwinReport:
    """The scorecard of every seed's ledgers (see the module docstring)."""
    control = [s.ledgers[0] for s in seeds]
    by_policy: dict[str, list[Any]] = {p.name: [] for p in policies}
    for s in seeds:
        for lg in s.ledgers[1:]:
            by_policy[lg.policy].append(lg)
    data: dict[str, PolicyData] = {CONTROL: pooled(control, control)}
    for name, ledgers in by_policy.items():
        data[name] = pooled(ledgers, control)
    kpis = kpi_table(list(data.values()))
    margins = []
    for name, d in data.items():
        if name == CONTROL:
            continue
        if SERVING in data and name != SERVING:
            margins.extend(m.as_dict() for m in compare(d, data[SERVING]))
        if name == SERVING and LIST_ARM in data:  # personalised pricing minus list price, paired
            margins.extend(m.as_dict() for m in compare(d, data[LIST_ARM]))
        margins.extend(m.as_dict() for m in compare(d, data[CONTROL]))
    margin_frame = pd.DataFrame(margins, columns=["kpi", "policy", "baseline", "margin", "std_error", "z", "winner"])
    verdict = margin_frame[(margin_frame["policy"] == CANDIDATE) & (margin_frame["baseline"] == SERVING)]
    config = options.config
    params = {
        "customers": config.customers,
        "days": config.days,
        "warmup_days": config.warmup_days,
        "seeds": ",".join(str(s) for s in config.seeds),
        "policies": ",".join(p.name for p in policies),
        "candidate_policy": str(options.candidate_policy) if options.candidate_policy else None,
        "candidate_versions": dict(options.candidate_versions) or None,
        "serving_versions": dict(options.serving_versions) or None,
        "scheduled_rate": config.scheduled_rate,
        "workers": config.workers,
    }
    timings = []
    for s in seeds:
        timings.append({"seed": s.seed, "policy": "warm-up", "seconds": {"total": round(s.warmup_seconds, 2)}})
        for lg in s.ledgers:
            timings.append(
                {"seed": s.seed, "policy": lg.policy, "seconds": {k: round(v, 2) for k, v in lg.seconds.items()}}
            )
    checks = {name: ledger_fairness(ledgers, fairness) for name, ledgers in by_policy.items() if ledgers}
    refusals = gate_refusals(checks[CANDIDATE], checks.get(SERVING)) if CANDIDATE in checks else []
    return TwinReport(
        pricing=pricing_table(by_policy),
        fairness=checks,
        refusals=refusals,
        params=params,
        policies=[
            {"name": CONTROL, "label": "no-contact control", "source": "no decision point is answered"},
            *({"name": p.name, "label": p.label, "source": p.source} for p in policies),
        ],
        kpis=kpis,
        margins=margin_frame,
        verdict=verdict.reset_index(drop=True),
        daily=_daily(seeds),
        customers={s.seed: len(s.ledgers[0].ids) for s in seeds},
        timings=timings,
        notes=list(notes),
        seconds=seconds,
    )


def ledger_fairness(ledgers: Sequence[Ledger], spec: FairnessSpec) -> FairnessReport:
    """The fairness check of one policy's ledgers (every seed's customers pooled, one unit per seed and customer)."""
    units, ages, offered, prices = [], [], [], []
    for lg in ledgers:
        keys = np.char.add(f"{lg.seed}:", lg.ids.astype(str))
        units.append(keys)
        ages.append(lg.ages if lg.ages is not None else np.full(len(lg.ids), np.nan))
        offered.append(lg.counters["credit_offers"] > 0)
        products = {a.id: a.product or a.id for a in lg.catalogue.actions}
        for pos, actions, price in lg.priced:
            prices.append(pd.DataFrame({"unit": keys[pos], "product": [products.get(a, a) for a in actions],
                                        "price": price}))  # fmt: skip
    index = pd.Index(np.concatenate(units), name="unit")
    groups = group_frame(index, pd.Series(np.concatenate(ages), index=index), spec)
    priced = pd.concat(prices, ignore_index=True) if prices else None
    return fairness_report(groups, pd.Series(np.concatenate(offered), index=index), spec, priced)


def _daily(seeds: Sequence[SeedResult]) -> pd.DataFrame:
    """Per policy, seed and day: value, cost, contacts, the control's value and the cumulative net value per
    1,000 customers (value minus the control's, minus contact cost)."""
    frames = []
    for s in seeds:
        control = pd.DataFrame(s.ledgers[0].daily)
        n = max(len(s.ledgers[0].ids), 1)
        for lg in s.ledgers:
            f = pd.DataFrame(lg.daily)
            f.insert(0, "seed", s.seed)
            f.insert(0, "policy", lg.policy)
            f["control_value"] = control["gross_value"].to_numpy()
            net = f["gross_value"] - f["control_value"] - f["cost"]
            f["net_value_per_1000_cum"] = net.cumsum() / n * 1000.0
            frames.append(f)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def value_plot(report: TwinReport, path: Path) -> Path:
    """Cumulative net value per 1,000 customers over the twin's days, one line per policy (mean of the seeds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = report.labels
    for name, frame in report.daily.groupby("policy", sort=False):
        if name == CONTROL:
            continue
        mean = frame.groupby("day")["net_value_per_1000_cum"].mean()
        ax.plot(mean.index - mean.index.min() + 1, mean.to_numpy(), label=labels.get(str(name), str(name)))
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=1, label="no-contact control")
    seeds = len(report.customers)
    ax.set(
        xlabel="twin day",
        ylabel="net value vs control (EUR / 1,000 customers, cumulative)",
        title=f"Net value over time ({report.params['customers']:,} customers, {seeds} seed{'s' * (seeds > 1)})",
    )
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_report(report: TwinReport, run_dir: Path) -> dict[str, Path]:
    """twin.json, kpis.csv, margins.csv, daily.csv and value_over_time.png in `run_dir`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": run_dir / "twin.json",
        "kpis": run_dir / "kpis.csv",
        "margins": run_dir / "margins.csv",
        "daily": run_dir / "daily.csv",
        "plot": run_dir / "value_over_time.png",
        "pricing": run_dir / "pricing.csv",
    }
    paths["json"].write_text(json.dumps(report.as_dict(), indent=2, default=str))
    report.kpis.to_csv(paths["kpis"], index=False)
    report.margins.to_csv(paths["margins"], index=False)
    report.daily.to_csv(paths["daily"], index=False)
    report.pricing.to_csv(paths["pricing"], index=False)
    value_plot(report, paths["plot"])
    return paths


def log_report(settings: Settings, report: TwinReport, run_dir: Path) -> str:
    """One MLflow run in `<prefix>-twin`: params, `<policy>.<kpi>` metrics, the run folder's files as artefacts."""
    import mlflow

    from nextbest.models.registry import use_tracking
    from training.tracking import ensure_experiment

    use_tracking(settings)
    experiment_id = ensure_experiment(settings, f"{settings.mlflow.experiment_prefix}-twin")
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"twin {run_dir.name}") as run:
        params = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in report.params.items()}
        mlflow.log_params({k: v for k, v in params.items() if v is not None})
        mlflow.log_metrics(report.metrics())
        for name in ("twin.json", "kpis.csv", "margins.csv", "daily.csv", "pricing.csv", "value_over_time.png"):
            if (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name), artifact_path="twin")
        tags = {"nextbest.job": "twin", "nextbest.notes": " | ".join(report.notes)[:5000]}
        if report.winner is not None:
            tags["nextbest.twin.winner"] = report.winner
        if report.gate is not None:
            tags["nextbest.twin.gate"] = report.gate
            tags["nextbest.twin.gate_reasons"] = " | ".join(report.refusals)[:5000]
        for name, check in report.fairness.items():
            if np.isfinite(check.min_ratio):
                mlflow.log_metric(f"{'policy_' + name}.fairness_min_ratio", check.min_ratio)
        mlflow.set_tags(tags)
        return run.info.run_id


def record_gate(settings: Settings, report: TwinReport, run_dir: Path) -> dict[str, Any] | None:
    """Append the what-if gate's decision (who, when, the run, refused or passed, why) to `<home>/twin/gate.jsonl`;
    None when the run had no candidate."""
    from datetime import UTC, datetime

    from training.tracking import who

    if report.gate is None:
        return None
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "who": who(),
        "run": str(run_dir),
        "candidate": report.params.get("candidate_policy"),
        "candidate_versions": report.params.get("candidate_versions"),
        "decision": report.gate,
        "reasons": report.refusals,
        "winner_on_net_value": report.winner,
        "candidate_min_ratio": report.fairness[CANDIDATE].min_ratio,
    }
    path = settings.home / "twin" / "gate.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
    level = logging.WARNING if report.refusals else logging.INFO
    logger.log(
        level, "what-if gate: candidate %s%s", report.gate, f": {'; '.join(report.refusals)}" * bool(report.refusals)
    )
    return record
