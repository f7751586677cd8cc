"""Retraining on a drift verdict, for any project: training set rebuilt, a challenger gated, the service reloaded.

One retrain of a model of a project (`nextbest.project.Project`) is:
1. the training set rebuilt through the project's kind (`training.served.build_retraining_set`): the model's usual
   rows (the simulated bank's genome builders, or the onboarding training set of a bank's own tables) cut at
   `as_of` (rows whose label was known then), plus, for a model whose label is the offer's outcome (the simulated
   bank's NBA), one row per served and delivered action with its feedback outcome, features retrieved
   point-in-time at the decision time; `source` (logged | served) in the lineage. A table project's models are
   labelled by events of the bank's own tables, not by offer outcomes: their served decisions are not folded in,
   and the record says so;
2. tune, log and register a `challenger` through the shared trainer (`training.pipeline.fit_and_log`, one MLflow
   run with the lineage; a table model with the options its onboarding trains it with: its split, test fraction,
   registered name and experiment);
3. the promotion gate (the model's `gate` in the project) on the most recent data (the run's test split, or with
   `gate_days` exactly the last N days before `as_of`); `champion` moves only if the challenger wins; the gate's
   numbers go to the promotion log and MLflow;
4. if anything was promoted and `serving.url` is set: `POST /admin/reload` on the running service (admin key from
   `serving.api_keys`) and a check through `/status` that it now serves the registry's champions of the project's
   served models; otherwise the service picks the champion up on its registry poll (`serving.reload_interval_s`),
   and the record says so.

Every retrain appends one line per model to the project's `<reports>/retrains.jsonl` (`monitoring.store.reports_dir`):
the verdict that triggered it, the MLflow run, the gate's numbers and decision, the data sources, and what the
service did.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nextbest.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from nextbest.project import Project
    from nextbest.settings import Settings
    from training.datasets import TrainingSet
    from training.pipeline import FitOptions, TrainResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceReload:
    """What the running service did after a promotion."""

    mode: str  # "admin_reload" | "poller" | "none"
    ok: bool
    detail: str
    served_versions: dict[str, str] = field(default_factory=dict)
    champion_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrainOutcome:
    """What retraining one model produced."""

    model: str
    version: str | None
    promoted: bool
    reason: str
    run_id: str
    metrics: dict[str, float]
    gate: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    reload: ServiceReload | None = None
    # Why served decisions were not folded in (a model whose label is not the offer's outcome); None otherwise.
    served_note: str | None = None


@dataclass(frozen=True)
class RetrainOptions:
    """The knobs of one retrain (see `retrain_models`)."""

    trials: int | None = None
    as_of: datetime | None = None
    include_served: bool = True
    window_days: float | None = None
    feedback_timeout_days: float = 7.0
    trigger: str | None = None
    gate_days: float | None = None


def _admin_key(settings: Settings) -> str | None:
    return next((k for k, role in settings.serving.api_keys.items() if role == "admin"), None)


def reload_service(settings: Settings, url: str | None = None, project: Project | None = None) -> ServiceReload:
    """Tell the running service to load the registry's champions now and check it serves them.

    The champions compared are those of the project's served models (default project: the settings'). Without a
    URL (`serving.url`), nothing is called: the service's registry poll picks the new champion up within
    `serving.reload_interval_s` (the record says so, or that polling is off).
    """
    from nextbest.project import project_of
    from serving.client import DecisionClient, DecisionServiceError
    from training.registry import alias_version

    project = project or project_of(settings)
    url = url or settings.serving.url
    champions = {m: str(alias_version(settings, m, "champion")) for m in project.served_models}
    if not url:
        interval = settings.serving.reload_interval_s
        detail = (
            f"no serving.url: relying on the service's registry poll (every {interval:.0f} s)"
            if interval > 0
            else "no serving.url and registry polling is off: restart the service or POST /admin/reload"
        )
        return ServiceReload("poller" if interval > 0 else "none", interval > 0, detail, champion_versions=champions)
    client = DecisionClient(url, api_key=_admin_key(settings), timeout=120.0)
    try:
        answer = client.reload()
        served = {k: str(v) for k, v in client.status().get("model_versions", {}).items()}
    except (DecisionServiceError, OSError) as exc:
        logger.warning("service reload at %s failed: %s", url, exc)
        return ServiceReload("admin_reload", False, f"POST {url}/admin/reload failed: {exc}", {}, champions)
    ok = served == champions
    detail = answer.get("detail", "")
    if not ok:
        detail = f"service at {url} serves {served}, registry champions are {champions} ({detail})"
    logger.info("service at %s reloaded: %s", url, served)
    return ServiceReload("admin_reload", ok, detail, served, champions)


def retrained_models(project: Project, models: Sequence[str] | None = None) -> tuple[str, ...]:
    """The models to retrain: the given ones of the project (ConfigError naming its models), default the ones its
    decision service loads."""
    if models is None:
        return project.served_models
    unknown = [m for m in models if m not in project.model_names]
    if unknown:
        raise ConfigError(
            f"unknown model(s) {unknown} for project {project.name!r}; its models: {', '.join(project.model_names)}"
        )
    return tuple(dict.fromkeys(models))


def retrain_models(
    settings: Settings,
    models: Sequence[str] | None = None,
    trials: int | None = None,
    *,
    project: Project | None = None,
    as_of: datetime | None = None,
    include_served: bool = True,
    window_days: float | None = None,
    feedback_timeout_days: float = 7.0,
    trigger: str | None = None,
    reload: bool = True,
    gate_days: float | None = None,
) -> list[RetrainOutcome]:
    """Retrain each model of the project (tune, log, register as challenger, gate); reload the service.

    `project` defaults to the settings' and `models` to its served models. `trigger` names what caused the retrain
    (e.g. the verdict file) for the record; `as_of` (default now) cuts the data at a point in time (a simulation
    replaying past days passes its simulated day). `gate_days`: the gate's holdout is exactly the last `gate_days`
    before `as_of` and the model learns from everything before it (after a drift, the default time split -- the
    last 20% of rows as holdout -- would hold every drifted row out of training for weeks); without it, the run's
    own test split is the holdout.
    """
    from monitoring.store import reports_dir
    from nextbest.project import project_of

    project = project or project_of(settings)
    names = retrained_models(project, models)
    options = RetrainOptions(trials, as_of, include_served, window_days, feedback_timeout_days, trigger, gate_days)
    outcomes = [retrain_one(settings, project, model, options) for model in names]
    if reload and any(o.promoted for o in outcomes):
        service = reload_service(settings, project=project)
        outcomes = [replace(o, reload=service) for o in outcomes]
    _append_records(reports_dir(settings, project), outcomes, trigger, as_of)
    return outcomes


def retrain_one(settings: Settings, project: Project, model: str, options: RetrainOptions) -> RetrainOutcome:
    """Rebuild one model's training set, fit it through the shared trainer, gate it; the outcome (no reload)."""
    from training.pipeline import fit_and_log
    from training.served import build_retraining_set

    logger.info("retraining %s/%s", project.name, model)
    training_set = build_retraining_set(
        settings,
        model,
        project=project,
        as_of=options.as_of,
        include_served=options.include_served,
        feedback_timeout_days=options.feedback_timeout_days,
        window_days=options.window_days,
    )
    training_set, holdout = gate_holdout(training_set, options.as_of, options.gate_days)
    fit = fit_options(settings, project, model, training_set, options, split_for_gate=holdout is not None)
    result = fit_and_log(settings, training_set, fit, holdout=holdout)
    return _outcome(model, result, training_set)


def gate_holdout(
    training_set: TrainingSet, as_of: datetime | None, gate_days: float | None
) -> tuple[TrainingSet, pd.DataFrame | None]:
    """With `gate_days`: (the rows before the last `gate_days` before `as_of` whose label was known by then -- a
    churn snapshot's label is known at snapshot + horizon --, those last days as the gate's holdout); without: (the
    training set, None: the run's test split is the holdout)."""
    if gate_days is None:
        return training_set, None
    import pandas as pd

    from training.datasets import LABEL_KNOWN

    frame = training_set.frame
    ts = pd.to_datetime(frame[training_set.timestamp], utc=True)
    cut = pd.Timestamp(as_of or datetime.now(UTC)) - pd.Timedelta(days=gate_days)
    holdout = frame[ts >= cut]
    if holdout.empty:
        raise DataError(f"no {training_set.model} rows in the {gate_days:g} days before {cut}: nothing to gate on")
    lineage = {**training_set.lineage, "gate_holdout_from": str(cut), "gate_holdout_rows": len(holdout)}
    learn = ts < cut
    if LABEL_KNOWN in frame.columns:  # churn: no label the holdout's closures decide (training.datasets)
        learn &= pd.to_datetime(frame[LABEL_KNOWN], utc=True) <= cut
    return replace(training_set, frame=frame[learn], lineage=lineage), holdout


def fit_options(
    settings: Settings,
    project: Project,
    model: str,
    training_set: TrainingSet,
    options: RetrainOptions,
    split_for_gate: bool = False,
) -> FitOptions:
    """The shared trainer's options for a retrain: the genome's defaults, or the options a table model is onboarded
    with (`nextbest.jobs.onboard.train`: split, test fraction, registered name, experiment, threads), the model's
    gate, retrain tags. `split_for_gate`: the gate holds its own recent rows out, so validation and test take less.
    """
    from training.pipeline import FitOptions
    from training.registry import gate_rule

    gate = project.model(model).gate
    tags = {
        "nextbest.kind": "retrain",
        "nextbest.project": project.name,
        **({"nextbest.trigger": options.trigger} if options.trigger else {}),
    }
    common: dict[str, Any] = {
        "trials": options.trials or settings.training.trials,
        "rule": gate_rule(gate),
    }
    if project.tables is not None:
        from nextbest.jobs.onboard import table_fit_options

        common.update(table_fit_options(project.tables, settings, model, training_set, options.trials))
        tags["nextbest.onboarded"] = "true"
    if split_for_gate:
        common.update(valid_fraction=0.15, test_fraction=0.1)
    return FitOptions(tags=tags, **common)


def _outcome(model: str, result: TrainResult, training_set: TrainingSet) -> RetrainOutcome:
    decision = result.decision
    gate: dict[str, Any] = {}
    if decision is not None:
        gate = {
            "champion_version": decision.champion_version,
            "challenger": decision.challenger_metrics,
            "champion": decision.champion_metrics,
            "holdout": decision.holdout,
            "rule": decision.rule,
        }
    lineage = training_set.lineage
    return RetrainOutcome(
        model=model,
        version=result.version,
        promoted=result.promoted,
        reason=decision.reason if decision else "not gated",
        run_id=result.run_id,
        metrics={k: float(v) for k, v in result.metrics.items() if k.startswith("test_")},
        gate=gate,
        sources={"logged": int(lineage.get("rows_logged", 0)), "served": int(lineage.get("rows_served", 0))},
        served_note=lineage.get("served_not_folded"),
    )


def _append_records(
    folder: Path, outcomes: Sequence[RetrainOutcome], trigger: str | None, as_of: datetime | None
) -> None:
    """One line per retrained model in `<folder>/retrains.jsonl`."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "retrains.jsonl").open("a") as fh:
        for o in outcomes:
            record = {
                "ts": datetime.now(UTC).isoformat(),
                "trigger": trigger,
                "as_of": as_of.isoformat() if as_of else None,
                **asdict(o),
            }
            fh.write(json.dumps(record, default=str) + "\n")
