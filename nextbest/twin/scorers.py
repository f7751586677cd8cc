"""What scores the candidates of each twin policy, in the model slots of the decision engine.

The engine scores an action model's candidates with ONE `predict_proba` over (action x feature) rows and an entity
model over the customer's row (`serving.engine.DecisionEngine._predict`). A twin policy puts its scorer in those
slots, so screening, arbitration, caps and top-k stay the engine's and the policy's own:
- a registered model (`nextbest.models.artefact.LoadedModel`: stage 5's champion, stage 3's batch model, a
  candidate version) goes in as it is;
- `RateScorer` (stages 1 and 2): the acceptance rate the rule learnt from the logged contacts, per action (one offer
  for all) or per action within a segment x age band (segment rules), shrunk toward the action's rate
  (`training.ladder.acceptance_value_table`); the policy's priority `rate x value x weight` is then the rule's own
  ranking, the first eligible action of it wins;
- `ConstantScorer`: one probability for everyone (a rule bank without a churn model: its base churn rate);
- `TruthScorer` (the oracle): the simulator's true P(accept) of each action at each decision point on its channel,
  and the true churn risk over the churn model's horizon from the customer's last daily hazard.
Every scorer reads only the features the engine gives it (its `feature_names`), like a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nextbest.errors import DataError

if TYPE_CHECKING:
    from nextbest.simulator.policy import DecisionPoints
    from nextbest.simulator.stepper import World

#: the feature a twin row carries so a truth scorer knows which decision point a row belongs to
POINT_FEATURE = "twin_point"
AGE_BANDS = (0, 25, 35, 50, 65, 200)


def _age_band(age: np.ndarray) -> np.ndarray:
    """Index of `training.ladder.AGE_BANDS` each age falls in (-1 unknown)."""
    band = np.searchsorted(np.asarray(AGE_BANDS[1:-1]), age, side="right")
    return np.where(np.isnan(age), -1, band)


@dataclass
class ConstantScorer:
    """The same probability for every row."""

    name: str
    probability: float
    version: str = "constant"
    feature_names: list[str] = field(default_factory=list)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.probability)


@dataclass
class RateScorer:
    """Acceptance rates learnt from logged contacts: per action, optionally per segment x age band (stage 2)."""

    name: str
    version: str
    rates: np.ndarray  # (n groups + 1, n actions): row 0 every group, then one row per segment x age band
    grouped: bool
    segments: tuple[str, ...] = ("mass", "affluent", "small_business")

    @property
    def feature_names(self) -> list[str]:
        if self.grouped:
            return ["action_index", "age", "segment_affluent", "segment_small_business"]
        return ["action_index"]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        action = X[:, 0].astype(np.int64)
        if not self.grouped:
            return self.rates[0, action]
        band = _age_band(X[:, 1].astype(np.float64))
        segment = np.where(X[:, 3] > 0, 2, np.where(X[:, 2] > 0, 1, 0))
        group = np.where(band >= 0, 1 + segment * (len(AGE_BANDS) - 1) + band, 0)
        return self.rates[group, action]

    @classmethod
    def fit(
        cls, contacts: pd.DataFrame, values: Mapping[str, float], action_ids: Sequence[str], grouped: bool
    ) -> RateScorer:
        """Rates from logged contacts (action_id, accepted; segment and age_band for `grouped`), shrunk as the
        ladder's rules shrink them; an action never logged gets the lowest rate seen."""
        from training.ladder import AGE_BAND_LABELS, acceptance_value_table

        segments = ("mass", "affluent", "small_business")
        index = {a: i for i, a in enumerate(action_ids)}
        overall = acceptance_value_table(contacts, dict(values)).set_index("action_id")["rate"]
        floor = float(overall.min()) if len(overall) else 0.0
        base = np.array([float(overall.get(a, floor)) for a in action_ids])
        rates = np.tile(base, (1 + len(segments) * len(AGE_BAND_LABELS), 1))
        if grouped:
            table = acceptance_value_table(contacts, dict(values), ("segment", "age_band"))
            for row in table.itertuples(index=False):
                if row.segment in segments and row.age_band in AGE_BAND_LABELS and row.action_id in index:
                    g = 1 + segments.index(row.segment) * len(AGE_BAND_LABELS) + AGE_BAND_LABELS.index(row.age_band)
                    rates[g, index[row.action_id]] = float(row.rate)
        kind = "segment rules" if grouped else "one offer for all"
        return cls(name="nba", version=f"rule ({kind})", rates=rates, grouped=grouped, segments=segments)


@dataclass
class TruthScorer:
    """The oracle's scores: the truth at today's decision points (`prepare` before each day's batch)."""

    name: str
    kind: str  # "accept": P(accept) per action; "churn": P(close within `horizon_days`)
    action_ids: tuple[str, ...] = ()
    horizon_days: int = 30
    version: str = "truth"
    _today: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def feature_names(self) -> list[str]:
        return [POINT_FEATURE, "action_index"] if self.kind == "accept" else [POINT_FEATURE]

    def prepare(self, world: World, points: DecisionPoints, channel: np.ndarray, hazard: np.ndarray) -> None:
        """The truth of today's asked points: (points x catalogue actions) P(accept) on each point's channel, or the
        churn risk from each customer's last daily hazard."""
        if self.kind == "accept":
            order = [world.table.ids.index(a) for a in self.action_ids]
            self._today = world.p_accept_matrix(points, channel)[:, order]
        else:
            self._today = 1.0 - np.power(1.0 - np.asarray(hazard, dtype=np.float64), self.horizon_days)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        point = X[:, 0].astype(np.int64)
        if len(point) and (point.min() < 0 or point.max() >= len(self._today)):
            raise DataError("truth scorer: a row of a decision point not prepared today")
        if self.kind == "accept":
            return self._today[point, X[:, 1].astype(np.int64)]
        return self._today[point]


def scorer_kind(model: Any) -> str:
    """How a model slot is filled: `model` (a registered booster), `rule`, `constant` or `truth`."""
    if isinstance(model, RateScorer):
        return "rule"
    if isinstance(model, ConstantScorer):
        return "constant"
    if isinstance(model, TruthScorer):
        return "truth"
    return "model"
