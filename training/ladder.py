"""The evaluation ladder's policies and scoring: pure functions over frames of decision points and candidates.

A *decision point* is a moment when a channel asks what to show a customer (customer, time, channel, real-time
context). Its *candidates* are the actions the customer may be offered there (one row per decision point x eligible
action). Every policy of the ladder sees the same candidates and picks at most one action per decision point
("nothing" is a valid answer); the truth (`p_true`, the simulator's acceptance probability of that action at that
moment) then gives each policy's expected conversions and value per 1,000 decisions, so stages are compared on the
same traffic with no outcome noise. Design: policies only choose; scoring is one function shared by all, so no
stage can be scored more kindly than another.

What a decision is worth (`expected_value`, used for every stage and the oracle alike) is what the contact adds
over doing nothing, net of what it costs:

    value of showing a = p_true x (value + churn_value) x (1 - p_organic) - contact_cost,    nothing shown = 0
    churn_value        = prevented x relationship value

`value` is the catalogue's margin of one acceptance. `churn_value` (optional column; 0 when absent) is the churn
loss the acceptance prevents under the truth: `prevented` is the simulator's true drop in the probability of
closing within the horizon after the acceptance (`TrueWorld.churn_prevented`: retention actions cut the churn
log-hazard by 1.6 fading over 60 days, service actions by 0.6 over 30 days, a sale adds a product), and the
relationship value is what the bank loses when the customer leaves (the decision policy's value at risk, a
business valuation of the balances, not a model output).

`p_organic` (optional column; 0 when absent) is the truth's probability that the customer takes the action's
product on their own, with no contact, within `ORGANIC_HORIZON_DAYS` (`TrueWorld.p_organic`, equal to
`contact_truth.p_organic` for logged contacts). The world draws the organic uptake independently of the response
to a contact, and a customer who declines still takes the product organically as often as one never contacted
(with common random numbers the contacted and the uncontacted world differ exactly by the acceptors who would not
have taken it on their own, `tests/test_world_consequences.py`). So the contact's increment is

    P(accept and not organic) - 0 = p_true x (1 - p_organic)

acceptances, each worth the whole effect of the acceptance: the sale's margin and, for a sale, the product's
stickiness, which the organic buyer would have had anyway (for retention and service actions p_organic is 0, so
their prevented churn is credited in full). `contact_cost` (optional column; 0 when absent) is the catalogue's
cost of delivering one action on the decision point's channel (`Catalogue.channel_cost`), paid whether or not
the customer accepts; showing nothing costs nothing. An acceptance by a customer who would have bought anyway is
pull-forward, credited 0 (organic uptake after the 90-day horizon is not counted, nor the days a pulled-forward
product is held early).
Conversions per 1,000 count acceptances (`p_true`); incremental conversions `p_true x (1 - p_organic)`.

Stages (DESIGN.md "Evaluation ladder"): 1 one offer for all (`fit_one_offer`), 2 segment rules
(`fit_segment_rules`), 3 batch model without real-time context and 5 the full model with arbitration
(`ScorePolicy` over model scores, built in `training.evaluate`), and the oracle (`ScorePolicy` over the truth's
expected value, showing nothing where no contact is worth its cost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from nextbest.errors import DataError

logger = logging.getLogger(__name__)

DECISION_ID = "decision_id"
ACTION_ID = "action_id"
#: columns every candidates frame carries (`p_true` only where the truth is known, i.e. for scoring)
CANDIDATE_COLUMNS = (DECISION_ID, ACTION_ID, "value")
#: optional candidates column: EUR of churn loss an acceptance prevents under the truth (see module docstring)
CHURN_VALUE = "churn_value"
#: optional candidates column: the truth's P(the customer takes the product on their own, no contact)
P_ORGANIC = "p_organic"
#: optional candidates column: EUR the bank pays to deliver the action on the decision point's channel
CONTACT_COST = "contact_cost"
AGE_BANDS = (0, 25, 35, 50, 65, 200)
AGE_BAND_LABELS = ("<25", "25-34", "35-49", "50-64", "65+")


@runtime_checkable
class Policy(Protocol):
    """A ladder stage: picks at most one action per decision point from its candidates."""

    name: str

    def choose(self, candidates: pd.DataFrame) -> pd.Series:
        """Return, indexed by decision_id, the chosen action_id (None where the policy shows nothing)."""
        ...


def _check_candidates(candidates: pd.DataFrame, extra: Sequence[str] = ()) -> None:
    missing = [c for c in (*CANDIDATE_COLUMNS, *extra) if c not in candidates.columns]
    if missing:
        raise DataError(f"candidates frame lacks column(s) {missing}; has {list(candidates.columns)}")


def age_band(age: pd.Series | np.ndarray) -> np.ndarray:
    """Age bands used by the segment rules (stage 2), as an array of labels."""
    return np.asarray(pd.cut(np.asarray(age), bins=AGE_BANDS, labels=AGE_BAND_LABELS, right=False).astype(str))


def pick_best(candidates: pd.DataFrame, priority: np.ndarray, threshold: float | None = None) -> pd.Series:
    """Per decision point, the action of highest priority (ties: first in catalogue order); None below threshold.

    Decision points without any candidate get None too, so the result covers every decision_id present.
    """
    _check_candidates(candidates)
    prio = np.asarray(priority, dtype=float)
    if prio.shape != (len(candidates),):
        raise DataError(f"priority has shape {prio.shape}; expected ({len(candidates)},)")
    frame = pd.DataFrame(
        {DECISION_ID: candidates[DECISION_ID].to_numpy(), ACTION_ID: candidates[ACTION_ID].to_numpy(), "p": prio}
    )
    frame = frame[~np.isnan(prio)]
    # Stable sort keeps the first-listed candidate on ties, which makes choices deterministic.
    frame = frame.sort_values([DECISION_ID, "p"], ascending=[True, False], kind="stable")
    best = frame.drop_duplicates(DECISION_ID, keep="first").set_index(DECISION_ID)
    chosen = best[ACTION_ID].astype(object)
    if threshold is not None:
        chosen[best["p"] <= threshold] = None
    all_ids = pd.Index(candidates[DECISION_ID].unique(), name=DECISION_ID)
    return chosen.reindex(all_ids).astype(object).where(lambda s: s.notna(), None)


@dataclass(frozen=True)
class ScorePolicy:
    """Choose the candidate with the highest priority from a scoring function (models, arbitration, the oracle).

    `threshold`: show nothing when the best priority is at or below it (None: always show the best).
    """

    name: str
    priority: Callable[[pd.DataFrame], np.ndarray]
    threshold: float | None = None

    def choose(self, candidates: pd.DataFrame) -> pd.Series:
        return pick_best(candidates, self.priority(candidates), self.threshold)


@dataclass(frozen=True)
class RankedListPolicy:
    """Show the first eligible action of a fixed ranking, optionally one ranking per group (e.g. segment x age).

    `rankings` maps a group key (a tuple of the `group_by` column values; `()` for one list for all) to an ordered
    list of action ids; groups without their own list use `default`.
    """

    name: str
    default: tuple[str, ...]
    group_by: tuple[str, ...] = ()
    rankings: dict[tuple, tuple[str, ...]] = field(default_factory=dict)

    def choose(self, candidates: pd.DataFrame) -> pd.Series:
        _check_candidates(candidates, self.group_by)
        if self.group_by:
            keys = list(zip(*(candidates[c].astype(str) for c in self.group_by), strict=True))
        else:
            keys = [()] * len(candidates)
        # Rank of each candidate in its group's list; actions not listed are never shown by a rule policy.
        ranks = np.full(len(candidates), np.nan)
        cache: dict[tuple, dict[str, int]] = {}
        for i, (key, action) in enumerate(zip(keys, candidates[ACTION_ID].to_numpy(), strict=True)):
            order = cache.get(key)
            if order is None:
                ranking = self.rankings.get(key, self.default)
                order = cache[key] = {a: r for r, a in enumerate(ranking)}
            r = order.get(action)
            if r is not None:
                ranks[i] = r
        return pick_best(candidates, -ranks)


def acceptance_value_table(
    contacts: pd.DataFrame, values: dict[str, float], group_by: Sequence[str] = (), prior_strength: float = 20.0
) -> pd.DataFrame:
    """Observed acceptance rate x value per action (and group) on logged contacts, shrunk toward the action's
    overall rate so that a handful of lucky contacts in a small group does not make a rule.

    Returns columns: *group_by, action_id, contacts, accepted, rate, expected_value (sorted best first per group).
    """
    needed = [ACTION_ID, "accepted", *group_by]
    missing = [c for c in needed if c not in contacts.columns]
    if missing:
        raise DataError(f"contacts lack column(s) {missing} needed to fit a rule policy")
    if contacts.empty:
        raise DataError("no logged contacts in the training period to fit a rule policy on")
    acc = contacts["accepted"].astype(float)
    overall = contacts.assign(_a=acc).groupby(ACTION_ID)["_a"].agg(["sum", "count"])
    overall_rate = (overall["sum"] + 1.0) / (overall["count"] + 2.0)
    keys = [*group_by, ACTION_ID]
    stats = contacts.assign(_a=acc).groupby(keys, observed=True)["_a"].agg(["sum", "count"]).reset_index()
    prior = stats[ACTION_ID].map(overall_rate).to_numpy()
    stats["rate"] = (stats["sum"] + prior_strength * prior) / (stats["count"] + prior_strength)
    unknown = set(stats[ACTION_ID]) - set(values)
    if unknown:
        raise DataError(f"logged actions {sorted(unknown)} are not in the offer catalogue")
    stats["expected_value"] = stats["rate"] * stats[ACTION_ID].map(values)
    stats = stats.rename(columns={"sum": "accepted", "count": "contacts"})
    order = [*group_by, "expected_value", ACTION_ID]
    return stats.sort_values(order, ascending=[True] * len(group_by) + [False, True]).reset_index(drop=True)


def fit_one_offer(contacts: pd.DataFrame, values: dict[str, float]) -> RankedListPolicy:
    """Stage 1: the single action with the best acceptance x value on the training period, for everyone.

    The full ranking is kept so that a customer not eligible for the top offer gets the next one (what a bank's
    "offer of the month" campaign does), rather than nothing.
    """
    table = acceptance_value_table(contacts, values)
    ranking = tuple(table[ACTION_ID])
    logger.info("stage 1 one offer for all: %s (then %s)", ranking[0], ", ".join(ranking[1:4]))
    return RankedListPolicy(name="1 one offer for all", default=ranking)


def fit_segment_rules(
    contacts: pd.DataFrame, values: dict[str, float], group_by: tuple[str, ...] = ("segment", "age_band")
) -> RankedListPolicy:
    """Stage 2: one ranking per segment x age band from training-period acceptance x value (shrunk)."""
    table = acceptance_value_table(contacts, values, group_by)
    default = tuple(acceptance_value_table(contacts, values)[ACTION_ID])
    rankings = {
        tuple(str(k) for k in (key if isinstance(key, tuple) else (key,))): tuple(g[ACTION_ID])
        for key, g in table.groupby(list(group_by), observed=True, sort=True)
    }
    logger.info("stage 2 segment rules: %d groups", len(rankings))
    return RankedListPolicy(name="2 segment rules", default=default, group_by=group_by, rankings=rankings)


@dataclass(frozen=True)
class StageResult:
    """A policy's expected outcome on the evaluation traffic, per 1,000 decision points.

    `value_per_1000` is the incremental value net of contact costs (`expected_value`); `contact_cost_per_1000` the
    costs already subtracted from it; `incremental_conversions_per_1000` the acceptances that would not have
    happened without the contact.
    """

    stage: str
    decisions: int
    offers_per_1000: float
    conversions_per_1000: float
    value_per_1000: float
    incremental_conversions_per_1000: float = float("nan")
    contact_cost_per_1000: float = 0.0

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "stage": self.stage,
            "decisions": self.decisions,
            "offers_per_1000": self.offers_per_1000,
            "conversions_per_1000": self.conversions_per_1000,
            "incremental_conversions_per_1000": self.incremental_conversions_per_1000,
            "contact_cost_per_1000": self.contact_cost_per_1000,
            "value_per_1000": self.value_per_1000,
        }


def _optional(candidates: pd.DataFrame, column: str, upper: float | None = None) -> np.ndarray:
    """An optional non-negative candidates column (0 when absent), checked: no NaN, >= 0, <= upper."""
    if column not in candidates.columns:
        return np.zeros(len(candidates))
    values = candidates[column].to_numpy(dtype=float)
    if np.isnan(values).any() or (values < 0).any() or (upper is not None and (values > upper).any()):
        bound = f" and at most {upper:g}" if upper is not None else ""
        raise DataError(f"{column} must be a non-negative number{bound} for every candidate")
    return values


def organic_share(candidates: pd.DataFrame) -> np.ndarray:
    """The truth's P(organic uptake without contact) per candidate (`p_organic`; 0 when the column is absent)."""
    return _optional(candidates, P_ORGANIC, upper=1.0)


def contact_costs(candidates: pd.DataFrame) -> np.ndarray:
    """EUR paid to deliver each candidate on its decision point's channel (`contact_cost`; 0 when absent)."""
    return _optional(candidates, CONTACT_COST)


def credited_value(candidates: pd.DataFrame) -> np.ndarray:
    """What one acceptance of each candidate adds under the truth: (catalogue value + prevented churn loss) x
    (1 - p_organic), the share of acceptances that would not have happened without the contact (module docstring)."""
    value = candidates["value"].to_numpy(dtype=float) + _optional(candidates, CHURN_VALUE)
    return value * (1.0 - organic_share(candidates))


def expected_value(candidates: pd.DataFrame) -> np.ndarray:
    """The truth's expected incremental value of showing each candidate: p_true x credited value - contact cost.

    Showing nothing is worth 0, so a candidate below 0 is worth less than its cost."""
    _check_candidates(candidates, ("p_true",))
    return candidates["p_true"].to_numpy(dtype=float) * credited_value(candidates) - contact_costs(candidates)


def score_choices(candidates: pd.DataFrame, chosen: pd.Series, stage: str) -> StageResult:
    """Expected conversions and incremental value of the chosen actions under the truth (`expected_value`: p_true x
    credited value - contact cost), per 1,000 decisions; decisions showing nothing add 0.

    A chosen action that is not among the decision's candidates is a policy bug, not a zero: it raises.
    """
    _check_candidates(candidates, ("p_true",))
    n = int(candidates[DECISION_ID].nunique())
    if n == 0:
        raise DataError("no decision points to score")
    shown = chosen.dropna()
    picks = pd.DataFrame({DECISION_ID: shown.index.to_numpy(), ACTION_ID: shown.to_numpy()})
    truth = candidates[[DECISION_ID, ACTION_ID, "p_true"]].assign(
        _ev=expected_value(candidates),
        _inc=candidates["p_true"].to_numpy(dtype=float) * (1.0 - organic_share(candidates)),
        _cost=contact_costs(candidates),
    )
    merged = picks.merge(truth, how="left", on=[DECISION_ID, ACTION_ID])
    if merged["p_true"].isna().any():
        bad = merged[merged["p_true"].isna()].head(3).to_dict("records")
        raise DataError(f"policy {stage!r} chose actions that are not eligible candidates, e.g. {bad}")
    return StageResult(
        stage=stage,
        decisions=n,
        offers_per_1000=1000.0 * len(merged) / n,
        conversions_per_1000=1000.0 * float(merged["p_true"].sum()) / n,
        value_per_1000=1000.0 * float(merged["_ev"].sum()) / n,
        incremental_conversions_per_1000=1000.0 * float(merged["_inc"].sum()) / n,
        contact_cost_per_1000=1000.0 * float(merged["_cost"].sum()) / n,
    )


def score_random_choice(candidates: pd.DataFrame, stage: str = "random eligible offer") -> StageResult:
    """The exact expectation of showing one eligible action uniformly at random (the floor any stage must clear)."""
    _check_candidates(candidates, ("p_true",))
    n = int(candidates[DECISION_ID].nunique())
    if n == 0:
        raise DataError("no decision points to score")
    per = candidates.assign(
        _ev=expected_value(candidates),
        _inc=candidates["p_true"].to_numpy(dtype=float) * (1.0 - organic_share(candidates)),
        _cost=contact_costs(candidates),
    ).groupby(DECISION_ID)[["p_true", "_ev", "_inc", "_cost"]]
    means = per.mean()
    return StageResult(
        stage=stage,
        decisions=n,
        offers_per_1000=1000.0,
        conversions_per_1000=1000.0 * float(means["p_true"].sum()) / n,
        value_per_1000=1000.0 * float(means["_ev"].sum()) / n,
        incremental_conversions_per_1000=1000.0 * float(means["_inc"].sum()) / n,
        contact_cost_per_1000=1000.0 * float(means["_cost"].sum()) / n,
    )


def oracle_policy() -> ScorePolicy:
    """The oracle: knows the truth, shows the action of highest true expected incremental value (p_true x credited
    value - contact cost) and nothing where no candidate is worth more than nothing (0)."""
    return ScorePolicy(name="oracle (knows the truth)", priority=expected_value, threshold=0.0)


def ladder_table(candidates: pd.DataFrame, choices: dict[str, pd.Series]) -> pd.DataFrame:
    """Score already-made choices (stage name -> chosen action per decision); the LAST entry is the oracle.

    Columns: stage, decisions, offers_per_1000, conversions_per_1000, incremental_conversions_per_1000,
    contact_cost_per_1000, value_per_1000 (incremental, net of contact costs), share_of_oracle_value.
    """
    if not choices:
        raise DataError("no policies to score")
    rows = [score_choices(candidates, chosen, name).as_dict() for name, chosen in choices.items()]
    for row in rows:
        logger.info("ladder %s: %.1f value per 1,000 decisions", row["stage"], row["value_per_1000"])
    table = pd.DataFrame(rows)
    oracle_value = float(table["value_per_1000"].iloc[-1])
    table["share_of_oracle_value"] = table["value_per_1000"] / oracle_value if oracle_value > 0 else np.nan
    return table


def run_ladder(candidates: pd.DataFrame, policies: Sequence[Policy], oracle: Policy | None = None) -> pd.DataFrame:
    """Score every policy and the oracle on the same candidates; one row per stage with the share of the oracle."""
    oracle = oracle or oracle_policy()
    return ladder_table(candidates, {p.name: p.choose(candidates) for p in [*policies, oracle]})


@dataclass(frozen=True)
class StageDifference:
    """Paired difference of two stages' value per 1,000 decisions on the same decision points, with its standard
    error (decisions are independent draws; the truth is exact, so the only noise is which decisions were drawn)."""

    better: str
    worse: str
    diff_per_1000: float
    std_error_per_1000: float

    def as_dict(self) -> dict[str, float | str]:
        return {
            "stage": self.better,
            "minus": self.worse,
            "diff_per_1000": self.diff_per_1000,
            "std_error": self.std_error_per_1000,
            "z": self.diff_per_1000 / self.std_error_per_1000 if self.std_error_per_1000 > 0 else float("nan"),
        }


def decision_values(candidates: pd.DataFrame, chosen: pd.Series) -> np.ndarray:
    """True expected incremental value of each decision point's chosen action (`expected_value`); 0 where nothing
    is shown."""
    _check_candidates(candidates, ("p_true",))
    ids = pd.Index(candidates[DECISION_ID].unique())
    ev = pd.Series(
        expected_value(candidates),
        index=pd.MultiIndex.from_arrays([candidates[DECISION_ID], candidates[ACTION_ID]]),
    )
    shown = chosen.reindex(ids).dropna()
    picked = ev.reindex(pd.MultiIndex.from_arrays([shown.index, shown.to_numpy()]))
    if picked.isna().any():
        raise DataError("a policy chose actions that are not eligible candidates")
    out = pd.Series(0.0, index=ids)
    out[shown.index] = picked.to_numpy()
    return out.to_numpy()


def paired_difference(
    candidates: pd.DataFrame, choices: dict[str, pd.Series], better: str, worse: str
) -> StageDifference:
    """Stage `better` minus stage `worse` per 1,000 decisions, paired per decision point, with its standard error."""
    d = decision_values(candidates, choices[better]) - decision_values(candidates, choices[worse])
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return StageDifference(better, worse, 1000.0 * float(d.mean()), 1000.0 * se)
