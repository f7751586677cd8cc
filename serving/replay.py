"""Bit-exact replay of a logged decision: decide it again from what the log kept, and show that it matches.

`replay_decision(settings, decision_id)` rebuilds the decision through the same engine code as the service
(`serving.engine.DecisionEngine`), with every input taken from the log instead of the live world:
- the request as the channel sent it, and the decision's time;
- the feature snapshot the models saw (request-time context included), and the features of any other entity a model
  rule read (e.g. Berka's loan);
- the model versions (loaded from the registry, their artefact digests verified) and the decision policy itself,
  kept in the log by its digest;
- the contact history and consent changes as the decision saw them: only what had been committed before it started
  (`decided_at`, wall clock; later contacts and outcomes left out). A contact another worker committed in the
  microseconds between that stamp and the decision's read is the one race this cannot see.
Nothing is written: no contact, no record. The result compares the chosen actions (ids, propensities, priorities,
reasons), every rejected action with its rule, and every candidate's score with the logged decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from nextbest.errors import DataError, NotReadyError
from nextbest.policy import ContactRecord, DecisionPolicy, ModelRule, PolicyConfig
from nextbest.project import Project, project_of
from serving.engine import DecisionEngine, DecisionInputs, decision_context
from serving.schemas import RecommendRequest

if TYPE_CHECKING:
    from nextbest.decision_log import DecisionRecord
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Replay:
    """A replayed decision beside the logged one."""

    decision_id: str
    matches: bool
    differences: list[str] = field(default_factory=list)
    logged: dict[str, Any] = field(default_factory=dict)
    replayed: dict[str, Any] = field(default_factory=dict)


class _ReplayEngine(DecisionEngine):
    """The service's engine, fed from one logged decision; it writes nothing."""

    def __init__(self, settings: Settings, project: Project, logged: dict[str, Any], policy: PolicyConfig) -> None:
        super().__init__(settings, project=project, policy=policy)
        self._logged = logged
        # The policy is the one the log kept under this version: its version is the logged string, not a digest
        # recomputed by today's code (a release that changes the config model must not make the past differ).
        self.policy_version = str(logged.get("policy_version") or self.policy_version)
        self.record: DecisionRecord | None = None

    def _new_decision_id(self) -> str:
        return str(self._logged["decision_id"])

    def _contact_state(
        self, customer_id: int | str, now: datetime, policy: DecisionPolicy
    ) -> tuple[list[ContactRecord], list[tuple[str, bool]]]:
        since = now - timedelta(days=policy.history_days)
        seen_before = self._logged.get("decided_at")
        if seen_before is None:
            raise DataError(f"decision {self._logged['decision_id']} predates replayable logs (no decided_at)")
        return self.decision_log.contact_state(customer_id, since, seen_before=seen_before)

    def _read_subject(self, rule: ModelRule, key: int | str) -> dict[str, Any]:
        related = (self._logged.get("related_features") or {}).get(rule.model)
        if related is None:
            raise DataError(f"decision {self._logged['decision_id']} logged no features for rule {rule.name!r}")
        return dict(related["features"])

    def _deliver_all(self, items: Any) -> None:
        return None  # the contacts are already in the log: nothing is written again

    def _emit_all(self, records: Sequence[DecisionRecord]) -> None:
        self.record = records[-1]

    def _assigned(self, it: Any) -> Any:
        """The experiment assignment as logged (a holdout share or split changed since must not change the past)."""
        logged = self._logged
        it.holdout = bool(logged.get("holdout"))
        it.arm = logged.get("arm")
        it.campaign_id = logged.get("campaign_id")
        it.campaign_control = bool(logged.get("campaign_control"))
        return it

    def replay(self) -> DecisionRecord:
        logged = self._logged
        req = RecommendRequest.model_validate({k: v for k, v in (logged.get("request") or {}).items() if k != "ts"})
        now = logged["ts"]
        got = DecisionInputs(
            features={**(logged.get("features") or {}), self.project.served.key: logged["customer_id"]}
        )
        got.degraded = bool(logged.get("degraded")) and not logged.get("features")
        got.request_id = logged.get("request_id")
        self._decide(req, decision_context(req), now, got, time.perf_counter())
        assert self.record is not None
        return self.record


def replay_decision(settings: Settings, decision_id: str, project: Project | None = None) -> Replay:
    """Decide `decision_id` again from the log and compare (NotReadyError for an unknown id or policy)."""
    project = project or project_of(settings)
    engine = DecisionEngine(settings, project=project)
    engine._open_log()
    try:
        logged = engine.decision_log.get_decision(decision_id)
        if logged is None:
            raise NotReadyError(f"decision {decision_id!r} is not in the log of project {project.name!r}")
        policy_raw = engine.decision_log.policy(str(logged["policy_version"]))
    finally:
        engine.close()
    if policy_raw is None:
        raise NotReadyError(f"the log kept no policy {logged['policy_version']!r} for decision {decision_id!r}")
    replayer = _ReplayEngine(settings, project, logged, PolicyConfig.model_validate(policy_raw))
    replayer._open_log()
    try:
        replayer._store = replayer.features.store()
        replayer._open_readers()
        if project.kind == "genome":
            from nextbest.features import action_features

            replayer._action_table = action_features(replayer.catalogue)
        replayer._bundle = replayer._load_bundle(logged.get("model_versions") or {})
        record = replayer.replay()
    finally:
        replayer.close()
    return compare(decision_id, logged, record)


def compare(decision_id: str, logged: dict[str, Any], record: DecisionRecord) -> Replay:
    """The differences between a logged decision and its replay (none: a bit-exact match)."""
    replayed = {
        "chosen": list(record.chosen),
        "rejected": list(record.rejected),
        "scores": dict(record.scores),
        "model_scores": dict(record.model_scores),
        "model_versions": dict(record.model_versions),
        "policy_version": record.policy_version,
    }
    differences = []
    for name, value in replayed.items():
        if _normal(logged.get(name)) != _normal(value):
            differences.append(f"{name}: logged {logged.get(name)!r}, replayed {value!r}")
    shown = {k: logged.get(k) for k in replayed}
    return Replay(decision_id, not differences, differences, shown, replayed)


def _normal(value: Any) -> Any:
    """Compare the JSON the log stored with a freshly built record (tuples and lists alike, NaN as null)."""
    import json

    from nextbest.decision_log import clean

    return json.loads(json.dumps(clean(value), sort_keys=True, default=str))
