"""Model registry: versions, the `challenger` / `champion` aliases, and the promotion gate with its audit log.

The gate (`promote_if_better`) scores the challenger AND the current champion now, on the same most-recent holdout
(the test split of the challenger's training run), as serving loads them. Every version must first clear a FLOOR,
the very first one included:
    chance:    challenger ROC-AUC - 1.96 x SE(AUC) > 0.5          (DeLong's SE on this holdout: the lower end of
               its 95% interval is above chance, so a few lucky positives are no pass), and
    baseline:  challenger ROC-AUC >= plain XGBoost's ROC-AUC - max(0.02, 1.96 x SE(difference)) (defaults, 100
               rounds, fitted on the same rows as the challenger and scored on the same holdout; the training job
               passes its scores; DeLong's paired SE, so six positives cannot fail a model by one swapped pair).
A version below the floor stays registered (as `challenger`, with the reason on it) and is not promoted. Above it,
the first version is promoted; a later one moves `champion` only if it is better than the champion. What "better"
means depends on what the model decides:
  - a model that scores actions (NBA), on a holdout of logged decisions (`action_id`, `channel`,
    `logging_propensity`, `label`): the VALUE gate. Both versions' greedy policies are valued on the same logged
    decisions by doubly robust estimates with one shared reward model (`training.policy_value.
    compare_greedy_policies`); the challenger must earn more per decision, paired, at z >= 1.0 -- or, when the
    value cannot tell the two apart (a gain >= 0 below 1.0 SE), be better on pooled AUC by 0.002 -- and is never
    promoted with a lower estimated value; pooled AUC guards it (at most 0.01 below the champion's; log-loss at most
    0.002 or 1.96 paired SEs of the per-decision difference higher, whichever is larger). Pooled AUC alone
    rewards a model that learns which action the logging policy showed, not who needs what;
  - any other model (churn, default risk, a bank's table models), or a holdout without logged decisions: a margin
    larger than noise that does not buy ranking with worse probabilities:
    challenger ROC-AUC >= champion ROC-AUC + 0.002   and   challenger log-loss <= champion log-loss + 0.002.
Fairness (`nextbest.fairness`, docs/fairness.md): for a model that decides credit offers, the gate also compares the
offer rate of its selection (the top `fairness.selection_share` of the holdout's credit rows by score) across age
bands and the project's protected attributes; a challenger with an adverse-impact ratio below the threshold that the
champion does not have as low is refused, the ratios in the record. A first version has no champion to compare: its
flagged ratios are recorded and logged as a flag for review and it is promoted on the floor alone, unless the
project sets `fairness.refuse_first_version` (then every flagged ratio refuses it).
Every decision, promoted or not, is appended to `<home>/promotions.jsonl` and written as tags on the challenger's
model version (who, when, why, both metrics, the floor, the value comparison), so the MLflow UI and the file tell
the same story. Serving follows the `champion` alias, never a version number. `unchanged_since` tells the trainer
that the champion was made from the same data with the same recipe, so nothing new is registered.
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
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from nextbest.errors import ArtefactError, DataError, NotReadyError
from nextbest.models.registry import mlflow_client
from nextbest.settings import Settings
from training.metrics import auc_standard_error, binary_metrics
from training.tracking import who

if TYPE_CHECKING:
    import pandas as pd

    from nextbest.catalogue import Catalogue
    from nextbest.fairness import SelectionCheck
    from nextbest.models.integrity import ArtefactDigest
    from nextbest.project import GateSpec
    from training.policy_value import PolicyComparison

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTION_LOG = "promotions.jsonl"
_TAG_LIMIT = 4900  # MLflow tag values are capped at 5000 characters


@dataclass(frozen=True)
class GateRule:
    """The floor every version must clear on the holdout, and how much better than the champion it must be.

    `floor_z`: AUC - floor_z x SE(AUC) must exceed 0.5 (None: no chance floor). `baseline_tolerance`: AUC may be at
    most this much below the plain baseline's on the same holdout, or floor_z times the paired SE of the difference
    when that is larger (None, or no baseline given: not checked)."""

    min_auc_gain: float = 0.002
    max_logloss_increase: float = 0.002
    floor_z: float | None = 1.96
    baseline_tolerance: float | None = 0.02
    #: a model that scores actions, on a holdout of logged decisions, is judged on its greedy policy's value
    policy_value: bool = True
    #: the value gain (doubly robust, paired) must be positive and at least this many standard errors
    min_value_z: float = 1.0
    #: the pooled-AUC guard of the value gate: the challenger's AUC may be at most this much below the champion's
    max_auc_drop: float = 0.01


def gate_rule(spec: GateSpec) -> GateRule:
    """The project file's gate of one model (`models[].gate`) as the rule the registry applies."""
    return GateRule(
        min_auc_gain=spec.min_auc_gain,
        max_logloss_increase=spec.max_logloss_increase,
        floor_z=spec.floor_z,
        baseline_tolerance=spec.baseline_tolerance,
        policy_value=spec.policy_value,
        min_value_z=spec.min_value_z,
        max_auc_drop=spec.max_auc_drop,
    )


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
    floor: dict[str, Any] = field(default_factory=dict)
    #: the fairness check (challenger's and champion's reports, the refusals); empty when not checked
    fairness: dict[str, Any] = field(default_factory=dict)
    #: the value gate's comparison (`training.policy_value.PolicyComparison`); empty when judged on AUC
    policy_value: dict[str, Any] = field(default_factory=dict)
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


def _scores(settings: Settings, name: str, version: str, holdout: pd.DataFrame) -> np.ndarray:
    """A version's probabilities for the holdout rows, as serving would compute them."""
    from nextbest.models.artefact import load_model

    model = load_model(name, settings=settings, version=version)
    return model.predict_proba(model.frame_to_matrix(holdout))


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {**binary_metrics(y, p), "roc_auc_se": auc_standard_error(y, p)[1]}


def _score(settings: Settings, name: str, version: str, holdout: pd.DataFrame, label: str) -> dict[str, float]:
    """A version's holdout metrics as serving would compute its scores, with the DeLong SE of its AUC."""
    return _metrics(holdout[label].to_numpy(), _scores(settings, name, version, holdout))


def unchanged_since(settings: Settings, name: str, data_fingerprint: str, recipe_digest: str) -> str | None:
    """Why a new version would add nothing (the champion was made from the same data, by fingerprint, with the same
    recipe), or None (no champion, or anything differs)."""
    from mlflow.exceptions import MlflowException

    version = alias_version(settings, name, CHAMPION)
    if version is None:
        return None
    try:
        tags = mlflow_client(settings).get_model_version(name, version).tags or {}
    except MlflowException:
        return None
    if tags.get("data_fingerprint") == data_fingerprint and tags.get("recipe_digest") == recipe_digest:
        return (
            f"unchanged: champion v{version} was trained on the same data (fingerprint {data_fingerprint[:8]}) "
            "with the same parameters; no new version registered"
        )
    return None


def floor_verdict(
    challenger: dict[str, float], rule: GateRule, baseline: dict[str, float] | None = None
) -> tuple[bool, dict[str, Any]]:
    """Does the challenger clear the floor (module docstring)? (passed, the figures and the reason).

    `challenger`: its holdout metrics with `roc_auc_se`; `baseline`: the plain XGBoost's `roc_auc` and the paired
    `difference` (challenger - baseline) with its `difference_se`."""
    auc, se = challenger.get("roc_auc", float("nan")), challenger.get("roc_auc_se", float("nan"))
    base = (baseline or {}).get("roc_auc")
    out: dict[str, Any] = {"roc_auc": auc, "roc_auc_se": se, "baseline_roc_auc": base}
    if not np.isfinite(auc):
        return False, {**out, "reason": "holdout holds one class only: AUC undefined"}
    if rule.floor_z is not None:
        lower = auc - rule.floor_z * se if np.isfinite(se) else float("nan")
        out["lower"] = lower
        if not lower > 0.5:
            why = f"AUC {auc:.3f} - {rule.floor_z:g} x SE {se:.3f} = {lower:.3f} is not above chance (0.5)"
            return False, {**out, "reason": why}
    tolerance = rule.baseline_tolerance
    checked = tolerance is not None and base is not None and np.isfinite(base)
    if checked:
        noise = (rule.floor_z or 0.0) * float((baseline or {}).get("difference_se") or 0.0)
        allowed = max(float(tolerance), noise if np.isfinite(noise) else 0.0)  # type: ignore[arg-type]
        out["baseline_allowed_gap"] = allowed
        if auc < base - allowed:  # type: ignore[operator]
            why = (
                f"AUC {auc:.3f} is worse than a plain XGBoost on the same rows ({base:.3f}) by more than "
                f"{allowed:.3f} (the larger of {tolerance:g} and {rule.floor_z:g} x the paired SE of the difference)"
            )
            return False, {**out, "reason": why}
    shown = [f"AUC {auc:.3f} +- {se:.3f} (SE)"] if rule.floor_z is not None else []
    if checked:
        shown.append(f"plain XGBoost {base:.3f}")
    return True, {**out, "reason": "clears the floor: " + ", ".join(shown) if shown else ""}


def baseline_on(y: np.ndarray, challenger: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """The plain baseline's holdout figures the floor reads: its AUC, and the paired difference with its SE."""
    from training.metrics import paired_auc_difference

    difference, se = paired_auc_difference(y, challenger, baseline)
    return {**binary_metrics(y, baseline), "difference": difference, "difference_se": se}


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
    baseline: np.ndarray | None = None,
    fairness: SelectionCheck | Literal["project"] | None = "project",
) -> PromotionDecision:
    """Score challenger and champion on `holdout` now; move `champion` only if the challenger clears the floor
    (`floor_verdict`; `baseline`: the plain XGBoost's scores of the holdout rows, when the caller fitted one), when
    there is a champion, beats it by `rule`, and shows no new adverse impact (`fairness`: the holdout's check;
    "project": the settings' project's for a model that decides credit offers, `project_fairness_check`)."""
    if holdout.empty or label not in holdout.columns:
        raise DataError(f"the gate needs a non-empty holdout with a {label!r} column")
    challenger_version = str(challenger_version)
    champion_version = alias_version(settings, name, CHAMPION)
    y = holdout[label].to_numpy()
    p = _scores(settings, name, challenger_version, holdout)
    challenger = _metrics(y, p)
    base = baseline_on(y, p, np.asarray(baseline, dtype=float)) if baseline is not None else None
    cleared, floor = floor_verdict(challenger, rule, base)
    champion: dict[str, float] | None = None
    value: dict[str, Any] = {}
    if champion_version == challenger_version:
        promoted, reason = False, f"version {challenger_version} already is the champion"
    elif champion_version is None:
        promoted, reason = True, "; ".join(filter(None, ["first version: no champion to beat", floor["reason"]]))
    else:  # the champion is scored even below the floor: the record shows both
        compared = _against_champion(settings, name, (challenger_version, champion_version), challenger, holdout,
                                     label, rule)  # fmt: skip
        promoted, reason, champion, value = compared
    if not cleared and champion_version != challenger_version:
        first = "first version: " if champion_version is None else ""
        promoted, reason = False, f"{first}below the floor: {floor['reason']}; registered, not promoted"
    from nextbest.fairness import refusal_summary

    fair: dict[str, Any] = {}
    if fairness == "project":
        fairness = project_fairness_check(settings, name, holdout)
    if fairness is not None and not isinstance(fairness, str) and champion_version != challenger_version:
        fair = _fairness_verdict(settings, name, champion_version, holdout, p, fairness)
        first = champion_version is None
        if fair["refusals"] and (not first or fairness.spec.refuse_first_version):
            why = refusal_summary(fair["refusals"])
            promoted, reason = False, f"{'first version: ' * first}{why}; registered, not promoted"
        elif fair["refusals"] and promoted:  # a first version: no champion to compare; flagged for review
            fair["flagged_only"] = True
            flagged = refusal_summary(fair["refusals"])
            reason = f"{reason}; fairness FLAGGED for review (no champion to compare): {flagged}"
            logger.warning("%s v%s promoted with a fairness flag: %s", name, challenger_version, flagged)
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
        floor={k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in floor.items()},
        fairness=fair,
        policy_value=value,
    )
    _record(settings, decision, run_id=run_id)
    return decision


def project_fairness_check(settings: Settings, name: str, holdout: pd.DataFrame) -> SelectionCheck | None:
    """The settings' project's fairness check of model `name` on `holdout` (`nextbest.fairness.
    project_selection_check`); None when the project cannot be read or the model decides no credit offer."""
    from nextbest.errors import ConfigError
    from nextbest.fairness import project_selection_check
    from nextbest.project import project_of

    try:
        project = project_of(settings)
    except ConfigError:
        return None
    return project_selection_check(project, name, holdout)


def _fairness_verdict(
    settings: Settings,
    name: str,
    champion_version: str | None,
    holdout: pd.DataFrame,
    challenger_scores: np.ndarray,
    check: SelectionCheck,
) -> dict[str, Any]:
    """The challenger's and the champion's fairness reports on the holdout, and the refusals (`gate_refusals`)."""
    from nextbest.fairness import gate_refusals

    mine = check.report(challenger_scores)
    theirs = None
    if champion_version is not None:
        try:
            theirs = check.report(_scores(settings, name, champion_version, holdout))
        except (DataError, ArtefactError) as exc:  # no yardstick: every flagged ratio refuses
            logger.warning("fairness: champion v%s of %s cannot be scored (%s)", champion_version, name, exc)
    return {
        "challenger": mine.to_dict(),
        "champion": theirs.to_dict() if theirs is not None else None,
        "refusals": gate_refusals(mine, theirs),
    }


def _against_champion(
    settings: Settings,
    name: str,
    versions: tuple[str, str],
    challenger: dict[str, float],
    holdout: pd.DataFrame,
    label: str,
    rule: GateRule,
) -> tuple[bool, str, dict[str, float] | None, dict[str, Any]]:
    """(promoted, reason, the champion's metrics, the value comparison or {}) of a challenger above the floor against
    the current champion (`versions`: challenger's, champion's)."""
    challenger_version, champion_version = versions
    try:
        champion = _score(settings, name, champion_version, holdout, label)
    except DataError as exc:
        # A champion on another feature set cannot be scored on this holdout: a human decides (`promote`).
        return False, f"champion v{champion_version} cannot be scored on this holdout ({exc})", None, {}
    except ArtefactError as exc:
        # A refused champion (tampered, corrupt) is no yardstick: a human decides, with the reason on record.
        return False, f"champion v{champion_version} cannot be loaded to compare ({exc})", None, {}
    comparison, why_not = _policy_comparison(settings, name, versions, holdout, rule)
    if comparison is None:
        promoted, reason = _verdict(challenger, champion, rule)
        return promoted, (f"{reason} (judged on AUC: {why_not})" if why_not else reason), champion, {}
    promoted, reason = _value_verdict(challenger, champion, comparison, rule)
    return promoted, reason, champion, comparison.to_dict()


def _policy_comparison(
    settings: Settings, name: str, versions: tuple[str, str], holdout: pd.DataFrame, rule: GateRule
) -> tuple[PolicyComparison | None, str]:
    """The two versions' greedy policies valued on the holdout's logged decisions, or None and why not (a model that
    scores entities, a holdout without logged decisions, the value gate switched off: no reason given)."""
    from feature_repo.actions import ACTION_FEATURES
    from nextbest.models.artefact import load_model
    from training.policy_value import REQUIRED_COLUMNS, compare_greedy_policies

    if not rule.policy_value:
        return None, ""
    models = [load_model(name, settings=settings, version=v) for v in versions]
    if not all(any(c in m.feature_names for c in ACTION_FEATURES) for m in models):
        return None, ""  # an entity model (churn, default risk): no policy to value
    missing = [c for c in REQUIRED_COLUMNS if c not in holdout.columns]
    if missing:
        return None, f"the holdout has no logged decisions (no {', '.join(missing)})"
    try:
        return compare_greedy_policies(models[0], models[1], holdout, _gate_catalogue(settings)), ""
    except DataError as exc:
        logger.warning("%s: no policy value comparison on this holdout: %s", name, exc)
        return None, f"no policy value on this holdout: {exc}"


def _gate_catalogue(settings: Settings) -> Catalogue:
    """The settings' project's action catalogue (the simulated bank's when the project declares none)."""
    from nextbest.catalogue import load_catalogue
    from nextbest.errors import ConfigError
    from nextbest.project import project_of

    try:
        catalogue = project_of(settings).catalogue
    except ConfigError:
        catalogue = None
    return catalogue if catalogue is not None else load_catalogue()


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


def _value_verdict(
    challenger: dict[str, float], champion: dict[str, float], comparison: PolicyComparison, rule: GateRule
) -> tuple[bool, str]:
    """The value gate: promoted when the challenger's greedy policy earns more than the champion's on the same
    logged decisions (doubly robust, paired: gain > 0 and z >= `min_value_z`), or when value cannot tell them apart
    (a gain >= 0 below `min_value_z` SEs) and pooled AUC is better by `min_auc_gain`; never when the estimated value
    is lower. Pooled AUC and log-loss guard it (AUC at most `max_auc_drop` lower, log-loss at most
    `max_logloss_increase` or 1.96 paired SEs of the per-decision difference higher, whichever is larger)."""
    c_auc, k_auc = challenger["roc_auc"], champion["roc_auc"]
    c_ll, k_ll = challenger["log_loss"], champion["log_loss"]
    value = (
        f"policy value {comparison.challenger_eur:.2f} vs {comparison.champion_eur:.2f} EUR per decision "
        f"({comparison.difference_eur:+.2f} +- {comparison.difference_se:.2f}, z {comparison.z:.1f}, doubly robust "
        f"on {comparison.rows:,} logged decisions, {comparison.agreement:.0%} the same pick)"
    )
    guard = f"AUC {c_auc:.4f} vs {k_auc:.4f}, log-loss {c_ll:.4f} vs {k_ll:.4f}"
    if not np.isfinite(comparison.difference_eur) or not np.isfinite(comparison.difference_se):
        return False, f"policy value undefined on this holdout: {value}"
    if np.isfinite(c_auc) and np.isfinite(k_auc) and c_auc < k_auc - rule.max_auc_drop:
        return False, f"pooled AUC guard: {guard}; AUC may drop at most {rule.max_auc_drop} ({value})"
    # A guard refuses a clear loss, not noise: the log-loss may rise by max_logloss_increase or by 1.96 paired SEs
    # of the per-decision difference on this holdout, whichever is larger (as the floor's baseline check).
    tolerance = max(rule.max_logloss_increase, 1.96 * comparison.logloss_difference_se)
    if c_ll - k_ll > tolerance:
        return False, f"worse probabilities: {guard}; log-loss may rise at most {tolerance:.4f} ({value})"
    if comparison.difference_eur > 0 and comparison.z >= rule.min_value_z:
        return True, f"better policy value: {value} ({guard})"
    if comparison.difference_eur >= 0 and c_auc - k_auc >= rule.min_auc_gain:
        # Value cannot tell them apart (a gain under `min_value_z` SEs) and is not lower: pooled AUC breaks the tie.
        return True, f"policy value within noise, not lower: {value}; better pooled AUC: {guard}"
    return False, (
        f"not better on policy value: {value}; needs a gain at z >= {rule.min_value_z}, or a gain within noise "
        f"with an AUC gain >= {rule.min_auc_gain} ({guard})"
    )


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
        "promotion.floor": json.dumps(decision.floor, default=_json_default)[:_TAG_LIMIT],
    }
    if decision.fairness:
        brief = {
            "challenger_min_ratio": decision.fairness["challenger"]["min_ratio"],
            "champion_min_ratio": (decision.fairness.get("champion") or {}).get("min_ratio"),
            "refusals": decision.fairness["refusals"],
        }
        tags["promotion.fairness"] = json.dumps(brief, default=_json_default)[:_TAG_LIMIT]
    if decision.policy_value:
        tags["promotion.policy_value"] = json.dumps(decision.policy_value, default=_json_default)[:_TAG_LIMIT]
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
