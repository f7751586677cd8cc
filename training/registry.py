"""Model registry: versions, the `challenger` / `champion` aliases, and the promotion gate with its audit log.

The gate (`promote_if_better`) scores the challenger AND the current champion now, on the same most-recent holdout
(the test split of the challenger's training run), and moves `champion` only if the challenger is better by a
margin that is larger than noise and does not buy ranking with worse probabilities:
    challenger ROC-AUC >= champion ROC-AUC + 0.002   and   challenger log-loss <= champion log-loss + 0.002.
The very first version has no champion to beat and is promoted. Every decision, promoted or not, is appended to
`<home>/promotions.jsonl` and written as tags on the challenger's model version (who, when, why, both metrics),
so the MLflow UI and the file tell the same story. Serving follows the `champion` alias, never a version number.
`register_version` records the artefact's sha256 digest on the version and the run (`nextbest.models.integrity`);
every load checks it, so the gate and a manual `promote` refuse a tampered or corrupt version as serving does.
"""

from __future__ import annotations

import fcntl
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nextbest.errors import ArtefactError, DataError, NotReadyError
from nextbest.models.registry import mlflow_client
from nextbest.settings import Settings
from training.metrics import binary_metrics
from training.tracking import who

if TYPE_CHECKING:
    import pandas as pd

    from nextbest.models.integrity import ArtefactDigest

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTION_LOG = "promotions.jsonl"
_TAG_LIMIT = 4900  # MLflow tag values are capped at 5000 characters


@dataclass(frozen=True)
class GateRule:
    """How much better a challenger must be on the holdout to replace the champion."""

    min_auc_gain: float = 0.002
    max_logloss_increase: float = 0.002


@dataclass(frozen=True)
class PromotionDecision:
    """One gate decision: what was compared, on which holdout, the verdict and why."""

    model: str
    challenger_version: str
    champion_version: str | None
    promoted: bool
    reason: str
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    holdout: dict[str, Any]
    rule: dict[str, float]
    who: dict[str, str] = field(default_factory=who)
    when: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def promotion_log_path(settings: Settings) -> Path:
    return settings.home / PROMOTION_LOG


def read_promotion_log(settings: Settings, model: str | None = None) -> list[dict[str, Any]]:
    """All logged gate decisions (oldest first), optionally for one model."""
    path = promotion_log_path(settings)
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if model is None or r.get("model") == model]


def _append_log(settings: Settings, record: dict[str, Any]) -> None:
    path = promotion_log_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=_json_default, sort_keys=True) + "\n"
    with path.open("a") as f:
        # Several trainers (workers, CI jobs) may decide at once: one locked write per decision keeps lines whole.
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(line)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if np.isfinite(v) else None) for k, v in metrics.items()}


def register_version(
    settings: Settings,
    name: str,
    model_uri: str,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    description: str | None = None,
) -> str:
    """Register a logged model as a new version of `name`, give it the `challenger` alias, return the version.

    The artefact's sha256 digest (`nextbest.models.integrity`) is computed from the files MLflow stored for
    `model_uri` and recorded as tags of the version (at its creation, so no version exists without one) and of the
    run; then the version is downloaded as `load_model` downloads it and checked against the digest, before the
    `challenger` alias points at it.
    """
    import mlflow

    from nextbest.models.integrity import SOURCE_TAG

    client = mlflow_client(settings)
    digest = _stored_digest(settings, model_uri)
    mv = mlflow.register_model(model_uri, name, tags={**(tags or {}), **digest.tags()}, await_registration_for=0)
    run = run_id or mv.run_id
    if run:
        for key, value in {**digest.tags(), SOURCE_TAG: str(mv.source)}.items():
            client.set_tag(run, key, value)
    _verify_registered(settings, name, str(mv.version), digest)
    if description:
        client.update_model_version(name, mv.version, description=description)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    logger.info(
        "registered %s version %s (alias %s, run %s, sha256 %s)",
        name,
        mv.version,
        CHALLENGER,
        run,
        digest.sha256[:12],
    )
    return str(mv.version)


def _stored_digest(settings: Settings, artifact_uri: str) -> ArtefactDigest:
    """The digest of the model folder as the artefact store holds it (downloaded once into a temp dir)."""
    import tempfile

    import mlflow

    from nextbest.models.integrity import artefact_digest
    from nextbest.models.registry import registry_uri, tracking_uri, use_tracking

    use_tracking(settings)  # as `download_version`: MLflow resolves part of a download through the fluent URIs
    with tempfile.TemporaryDirectory(prefix="nextbest-digest-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri,
            dst_path=tmp,
            tracking_uri=tracking_uri(settings),
            registry_uri=registry_uri(settings),
        )
        return artefact_digest(Path(local))


def _verify_registered(settings: Settings, name: str, version: str, digest: ArtefactDigest) -> None:
    """Download the new version through the registry, as serving will, and check it against `digest`."""
    import tempfile

    from nextbest.models.artefact import download_version
    from nextbest.models.integrity import verify_artefact

    with tempfile.TemporaryDirectory(prefix="nextbest-verify-") as tmp:
        verify_artefact(
            name, version, download_version(settings, name, version, Path(tmp)), digest.sha256, digest.files
        )


def record_artefact_digest(settings: Settings, name: str, version: str, reason: str) -> str:
    """Vouch for a version registered without a digest (before digests existed, or by hand): record the digest of
    the files the artefact store holds now, with who and why, so `load_model` accepts it. Returns the digest.

    Only for versions whose files you trust: it records whatever is stored, tampered or not.
    """
    if not reason.strip():
        raise DataError("recording an artefact digest needs a reason for the audit trail")
    from nextbest.models.integrity import DIGEST_TAG

    client = mlflow_client(settings)
    mv = client.get_model_version(name, str(version))
    if (mv.tags or {}).get(DIGEST_TAG):
        raise DataError(f"model {name!r} version {version} already has a recorded digest; it cannot be replaced")
    digest = _stored_digest(settings, f"models:/{name}/{version}")
    attested = {
        "nextbest.artefact_attested": json.dumps({"who": who(), "when": datetime.now(UTC).isoformat(), "why": reason})
    }
    for key, value in {**digest.tags(), **attested}.items():
        client.set_model_version_tag(name, str(version), key, value[:_TAG_LIMIT])
    logger.warning("recorded artefact digest %s for %s v%s by hand: %s", digest.sha256[:12], name, version, reason)
    return digest.sha256


def alias_version(settings: Settings, name: str, alias: str) -> str | None:
    """The version an alias points at, or None if the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow_client(settings).get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _score(settings: Settings, name: str, version: str, holdout: pd.DataFrame, label: str) -> dict[str, float]:
    from nextbest.models.artefact import load_model

    model = load_model(name, settings=settings, version=version)
    p = model.predict_proba(model.frame_to_matrix(holdout))
    return binary_metrics(holdout[label].to_numpy(), p)


def _holdout_info(holdout: pd.DataFrame, timestamp: str) -> dict[str, Any]:
    info: dict[str, Any] = {"rows": len(holdout)}
    if timestamp in holdout.columns and len(holdout):
        info.update(start=str(holdout[timestamp].min()), end=str(holdout[timestamp].max()))
    return info


def promote_if_better(
    settings: Settings,
    name: str,
    challenger_version: str,
    holdout: pd.DataFrame,
    *,
    label: str = "label",
    timestamp: str = "event_timestamp",
    rule: GateRule = GateRule(),
    run_id: str | None = None,
) -> PromotionDecision:
    """Score challenger and champion on `holdout` now; move `champion` only if the challenger wins by `rule`."""
    if holdout.empty or label not in holdout.columns:
        raise DataError(f"the gate needs a non-empty holdout with a {label!r} column")
    challenger_version = str(challenger_version)
    champion_version = alias_version(settings, name, CHAMPION)
    challenger = _score(settings, name, challenger_version, holdout, label)
    champion: dict[str, float] | None = None
    if champion_version is None:
        promoted, reason = True, "first version: no champion to beat"
    elif champion_version == challenger_version:
        promoted, reason = False, f"version {challenger_version} already is the champion"
    else:
        try:
            champion = _score(settings, name, champion_version, holdout, label)
        except DataError as exc:
            # A champion on another feature set cannot be scored on this holdout: a human decides (`promote`).
            promoted, reason = False, f"champion v{champion_version} cannot be scored on this holdout ({exc})"
        except ArtefactError as exc:
            # A refused champion (tampered, corrupt) is no yardstick: a human decides, with the reason on record.
            promoted, reason = False, f"champion v{champion_version} cannot be loaded to compare ({exc})"
        else:
            promoted, reason = _verdict(challenger, champion, rule)
    decision = PromotionDecision(
        model=name,
        challenger_version=challenger_version,
        champion_version=champion_version,
        promoted=promoted,
        reason=reason,
        challenger_metrics=_finite(challenger),  # type: ignore[arg-type]
        champion_metrics=_finite(champion) if champion else None,  # type: ignore[arg-type]
        holdout=_holdout_info(holdout, timestamp),
        rule=asdict(rule),
    )
    _record(settings, decision, run_id=run_id)
    return decision


def _verdict(challenger: dict[str, float], champion: dict[str, float], rule: GateRule) -> tuple[bool, str]:
    c_auc, k_auc = challenger["roc_auc"], champion["roc_auc"]
    c_ll, k_ll = challenger["log_loss"], champion["log_loss"]
    if not (np.isfinite(c_auc) and np.isfinite(k_auc)):
        return False, "holdout holds one class only: AUC undefined, cannot compare"
    gain, ll_change = c_auc - k_auc, c_ll - k_ll
    summary = f"AUC {c_auc:.4f} vs {k_auc:.4f} ({gain:+.4f}), log-loss {c_ll:.4f} vs {k_ll:.4f} ({ll_change:+.4f})"
    if gain < rule.min_auc_gain:
        return False, f"not better enough: {summary}; needs AUC gain >= {rule.min_auc_gain}"
    if ll_change > rule.max_logloss_increase:
        return False, f"worse probabilities: {summary}; log-loss may rise at most {rule.max_logloss_increase}"
    return True, f"better: {summary}"


def _record(settings: Settings, decision: PromotionDecision, run_id: str | None = None) -> None:
    client = mlflow_client(settings)
    if decision.promoted:
        client.set_registered_model_alias(decision.model, CHAMPION, decision.challenger_version)
    record = {**decision.to_record(), "run_id": run_id}
    _append_log(settings, record)
    metrics = json.dumps(
        {"challenger": decision.challenger_metrics, "champion": decision.champion_metrics}, default=_json_default
    )
    tags = {
        "promotion.decision": "promoted" if decision.promoted else "rejected",
        "promotion.reason": decision.reason[:_TAG_LIMIT],
        "promotion.when": decision.when,
        "promotion.who": json.dumps(decision.who)[:_TAG_LIMIT],
        "promotion.compared_to": decision.champion_version or "none",
        "promotion.metrics": metrics[:_TAG_LIMIT],
        "promotion.holdout": json.dumps(decision.holdout)[:_TAG_LIMIT],
    }
    for key, value in tags.items():
        client.set_model_version_tag(decision.model, decision.challenger_version, key, value)
    logger.info(
        "%s v%s %s (champion %s): %s",
        decision.model,
        decision.challenger_version,
        "PROMOTED" if decision.promoted else "not promoted",
        decision.champion_version or "none",
        decision.reason,
    )


def promote(settings: Settings, name: str, version: str, reason: str) -> PromotionDecision:
    """Manual promotion (e.g. a new feature set the gate cannot compare, or a rollback); logged like the gate's."""
    if not reason.strip():
        raise DataError("a manual promotion needs a reason for the audit log")
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client(settings).get_model_version(name, str(version))
    except MlflowException as exc:
        raise NotReadyError(f"model {name!r} has no version {version}") from exc
    from nextbest.models.artefact import load_model

    load_model(name, settings=settings, version=version)  # ArtefactError: serving would refuse it, so do we
    decision = PromotionDecision(
        model=name,
        challenger_version=str(version),
        champion_version=alias_version(settings, name, CHAMPION),
        promoted=True,
        reason=f"manual: {reason}",
        challenger_metrics={},
        champion_metrics=None,
        holdout={},
        rule={},
    )
    _record(settings, decision)
    return decision
