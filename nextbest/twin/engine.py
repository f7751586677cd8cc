"""The service's decision engine, run by the twin: `DecisionEngine.decide_batch` with the genome's rows and a twin
policy's scorers in the model slots.

`TwinEngine` is `serving.engine.DecisionEngine` with four things set by the twin instead of loaded for a service:
- the models: a `ModelBundle` of the policy's scorers (`nextbest.twin.scorers`; registered models as they are),
  with the engine's own `build_layout`;
- the rows: `decide_batch(features=...)` gets each decision point's genome row (the snapshot views and the real-time
  state of `nextbest.features.daily`); `RowReader` is the online reader's `with_context` without a store, so the
  request-time context is computed by the same function as a read;
- the decision log: the run's own SQLite file (caps, cool-downs and consent read it, as in the service);
- two costs a simulation does not need are off by default: the reason codes (they explain a decision, never change
  it: the choice is made before them) and the write-behind decision record (the delivered contacts, which caps
  need, are still written through). `explain=True`, `keep_records=True` turn them on.
Everything else -- consent, suitability, contact caps, cool-downs, arbitration, top-k, experiments -- is the
engine's and the policy's code, unchanged (`tests/test_twin.py` feeds one customer-day to this path and to a plain
serving `DecisionEngine` loaded from the registry, given the same rows, and gets the same decisions).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from feature_repo.specs import JOIN_KEY, REALTIME_FIELDS
from nextbest.features.daily import SNAPSHOT_FIELDS
from nextbest.features.online import OnlineReader
from nextbest.twin.scorers import POINT_FEATURE, scorer_kind
from serving.engine import DecisionEngine, ModelBundle, build_layout

if TYPE_CHECKING:
    from nextbest.decision_log import DecisionLog
    from nextbest.policy import PolicyConfig
    from nextbest.project import Project
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

#: every feature a twin row carries (besides the key): the genome's snapshot views, its real-time state, the point
ROW_FIELDS: tuple[str, ...] = (*SNAPSHOT_FIELDS, *REALTIME_FIELDS, POINT_FEATURE)


class RowReader(OnlineReader):
    """The online reader's context step for rows a batch brings (no store behind it: the twin has no online store)."""

    def __init__(self, join_key: str, key_type: str, fields: Sequence[str], context: Any) -> None:
        self.join_key = join_key
        self.key_type = key_type
        self._context = context
        self._fields = tuple(fields)
        self.view_names = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return self._fields

    def read(self, value: object, request: Mapping[str, Any] | None = None) -> dict[str, Any]:
        raise NotImplementedError("the twin brings every row to decide_batch(features=...)")


class TwinEngine(DecisionEngine):
    """The decision engine with the twin's scorers, rows and log (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        project: Project,
        policy: PolicyConfig,
        decision_log: DecisionLog,
        models: Mapping[str, Any],
        *,
        explain: bool = False,
        keep_records: bool = False,
    ) -> None:
        super().__init__(settings, project=project, policy=policy, decision_log=decision_log)
        self._models = dict(models)
        self._explain = explain
        self._keep_records = keep_records
        missing = sorted(set(self.project.served_models) - set(self._models))
        if missing:
            raise ValueError(f"twin engine: no scorer for model(s) {missing}")

    def start(self) -> None:
        """Open the log, set the rows' reader and the scorers' bundle; ready to `decide_batch`."""
        from nextbest.features import action_features

        self._open_log()
        self._reader = RowReader(JOIN_KEY, self.project.served.key_type, ROW_FIELDS, self.features.context)
        self._action_table = action_features(self.catalogue)
        layouts = {}
        for name in self.project.served_models:
            scores_actions = self.project.model(name).scores == "action"
            model = self._models[name]
            table = self._action_table if scores_actions else None
            layouts[name] = build_layout(list(model.feature_names), self.catalogue, table)
        self._bundle = ModelBundle(models=self._models, layouts=layouts)
        self._check_feature_names()
        self._ready.set()
        logger.info("twin engine ready: %s", {n: f"{scorer_kind(m)} {m.version}" for n, m in self._models.items()})

    def _log_decision(self, *args: Any, **kwargs: Any) -> Any:
        if self._keep_records:  # the record only: the delivered contacts are written through before it
            return super()._log_decision(*args, **kwargs)
        return None

    def _explain_all(self, items: Any, scored: Any, bundle: ModelBundle, policy: Any) -> None:
        if self._explain and all(scorer_kind(m) == "model" for m in bundle.models.values()):
            super()._explain_all(items, scored, bundle, policy)
