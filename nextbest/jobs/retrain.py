"""Retraining on a drift verdict: served traffic folded in, a challenger gated, the running service reloaded.

One retrain of a model is:
1. the training set rebuilt through Feast (`training.served.build_retraining_set`): the usual rows cut at `as_of`
   (rows whose label was known then), plus, for NBA, one row per served and delivered action with its feedback
   outcome, features retrieved point-in-time at the decision time; `source` (logged | served) in the lineage;
2. tune, log and register a `challenger` (`training.pipeline.fit_and_log`: one MLflow run with the lineage);
3. the promotion gate on the most recent data (the run's test split, which holds the latest served rows);
   `champion` moves only if the challenger wins; the gate's numbers go to the promotion log and MLflow;
4. if anything was promoted and `serving.url` is set: `POST /admin/reload` on the running service (admin key from
   `serving.api_keys`) and a check through `/status` that it now serves the registry's champions; otherwise the
   service picks the champion up on its registry poll (`serving.reload_interval_s`), and the record says so.

Every retrain appends one line per model to `<reports_dir>/retrains.jsonl`: the verdict that triggered it, the
MLflow run, the gate's numbers and decision, the data sources, and what the service did.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nextbest.errors import ConfigError

if TYPE_CHECKING:
    from nextbest.settings import Settings

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


def _admin_key(settings: Settings) -> str | None:
    return next((k for k, role in settings.serving.api_keys.items() if role == "admin"), None)


def reload_service(settings: Settings, url: str | None = None) -> ServiceReload:
    """Tell the running service to load the registry's champions now and check it serves them.

    Without a URL (`serving.url`), nothing is called: the service's registry poll picks the new champion up
    within `serving.reload_interval_s` (the record says so, or that polling is off).
    """
    from serving.client import DecisionClient, DecisionServiceError
    from training.registry import alias_version

    url = url or settings.serving.url
    champions = {m: str(alias_version(settings, m, "champion")) for m in ("churn", "nba")}
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


def retrain_models(
    settings: Settings,
    models: Sequence[str],
    trials: int | None = None,
    *,
    as_of: datetime | None = None,
    include_served: bool = True,
    window_days: float | None = None,
    feedback_timeout_days: float = 7.0,
    trigger: str | None = None,
    reload: bool = True,
    gate_days: float | None = None,
) -> list[RetrainOutcome]:
    """Retrain each model on logged + served data (tune, log, register as challenger, gate); reload the service.

    `trigger` names what caused the retrain (e.g. the verdict file) for the record; `as_of` (default now) cuts the
    data at a point in time (a simulation replaying past days passes its simulated day). `gate_days`: the gate's
    holdout is exactly the last `gate_days` before `as_of` and the model learns from everything before it (after a
    drift, the default time split -- the last 20% of rows as holdout -- would hold every drifted row out of
    training for weeks); without it, the run's own test split is the holdout.
    """
    import pandas as pd

    from training.datasets import TIMESTAMP
    from training.pipeline import MODELS, FitOptions, fit_and_log
    from training.served import build_retraining_set

    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    outcomes: list[RetrainOutcome] = []
    for model in models:
        logger.info("retraining %s", model)
        training_set = build_retraining_set(
            settings,
            model,  # type: ignore[arg-type]
            as_of=as_of,
            include_served=include_served,
            feedback_timeout_days=feedback_timeout_days,
            window_days=window_days,
        )
        tags = {"nextbest.kind": "retrain", **({"nextbest.trigger": trigger} if trigger else {})}
        extra: dict[str, Any] = {}
        if gate_days is not None:
            frame = training_set.frame
            ts = pd.to_datetime(frame[TIMESTAMP], utc=True)
            cut = pd.Timestamp(as_of or datetime.now(UTC)) - pd.Timedelta(days=gate_days)
            holdout = frame[ts >= cut]
            lineage = {**training_set.lineage, "gate_holdout_from": str(cut), "gate_holdout_rows": len(holdout)}
            training_set = replace(training_set, frame=frame[ts < cut], lineage=lineage)
            extra = {"holdout": holdout, "valid_fraction": 0.15, "test_fraction": 0.1}
        gate_holdout = extra.pop("holdout", None)
        options = FitOptions(trials=trials or settings.training.trials, tags=tags, **extra)
        result = fit_and_log(settings, training_set, options, holdout=gate_holdout)
        decision = result.decision
        gate = {}
        if decision is not None:
            gate = {
                "champion_version": decision.champion_version,
                "challenger": decision.challenger_metrics,
                "champion": decision.champion_metrics,
                "holdout": decision.holdout,
                "rule": decision.rule,
            }
        outcomes.append(
            RetrainOutcome(
                model=model,
                version=result.version,
                promoted=result.promoted,
                reason=decision.reason if decision else "not gated",
                run_id=result.run_id,
                metrics={k: float(v) for k, v in result.metrics.items() if k.startswith("test_")},
                gate=gate,
                sources={
                    "logged": int(training_set.lineage.get("rows_logged", 0)),
                    "served": int(training_set.lineage.get("rows_served", 0)),
                },
            )
        )
    service: ServiceReload | None = None
    if reload and any(o.promoted for o in outcomes):
        service = reload_service(settings)
        outcomes = [RetrainOutcome(**{**o.__dict__, "reload": service}) for o in outcomes]
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    with (settings.reports_dir / "retrains.jsonl").open("a") as fh:
        for o in outcomes:
            record = {
                "ts": datetime.now(UTC).isoformat(),
                "trigger": trigger,
                "as_of": as_of.isoformat() if as_of else None,
                **asdict(o),
            }
            fh.write(json.dumps(record, default=str) + "\n")
    return outcomes
