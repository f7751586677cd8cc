"""Evaluation against the truth: the ladder of DESIGN.md, off-policy estimates beside the truth, model quality
beside the Bayes ceiling; printed by `nextbest evaluate` and logged to MLflow (experiment `<prefix>-evaluation`).

Held-out traffic: the decision points are logged contacts of the most recent split of the NBA training set (the
same time split training uses, so no model saw them): a customer at the moment a channel asked for a decision,
with that moment's features (Feast point-in-time, `nba_v1`) and its real-time context (trigger signal, location,
hour). Every policy chooses among the same candidates, the actions the serving policy's eligibility and
consent/suitability rules (`nextbest.policy.DecisionPolicy`, applied to the customer's source profile at that time)
allow on that channel. The simulator's `TrueWorld.p_accept` scores each candidate, so each stage's conversions and
value per 1,000 decisions are exact expectations, not noisy outcomes. Contact caps are not applied to any stage:
the contact history in the logs was produced by the logging policy, not by the evaluated policies, so caps
computed from it would be counterfactual for all of them alike.

Stages: 1 the best single offer on the training period, 2 the best offer per segment x age band, 3 a model trained
WITHOUT the real-time context features (the same exclusions as `experiments/nba_realtime_context.yaml`) ranking by
propensity x value, 5 the registered NBA champion with the full decision policy's arbitration (context weights,
retention boosted by the churn champion's risk, service triggers, floors that make "nothing" a decision), and the
oracle (the highest true expected value, nothing when none beats 0). For reference: a random eligible offer, the
logging policy's own value on the same points, and stage 5's decision policy fed the true propensities
(`STAGE_POLICY_CEILING`), which splits stage 5's gap to the oracle into what the model misses and what the
policy's rules cost.

Every decision is credited with what the contact adds over doing nothing, net of its cost, under the truth
(`ladder.expected_value`, the same function for every stage and the oracle): p_true x (catalogue value + the churn
loss it prevents, `attach_churn_value`) x (1 - p_organic, the truth's chance of organic uptake anyway,
`attach_truth`) - the channel's contact cost (`attach_contact_cost`); showing nothing is worth 0. The off-policy
estimates can only see logged rewards (the catalogue value of an accepted offer minus the logged contact's cost):
they are set beside the truth of that same reward (`_LadderResult.truth_by_stage`).

Model quality (`_nba_quality`): beside the pooled AUC, the ranking within each action (Spearman of the prediction
vs the true p_accept, AUC vs the realised outcome, on the held-out contacts; Spearman also on the ladder's
candidates, every eligible action at every decision point), averaged with weights value x rows, and the
calibration per action kind (ECE vs outcomes and vs the truth).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nextbest.catalogue import Catalogue
from nextbest.errors import ConfigError, DataError, NotReadyError
from nextbest.settings import Settings
from training import ladder
from training.ope import estimate_all, snips

if TYPE_CHECKING:
    from nextbest.models.artefact import LoadedModel
    from nextbest.policy import DecisionPolicy, RankedAction
    from training.datasets import TrainingSet

logger = logging.getLogger(__name__)

STAGE_RANDOM = "random eligible offer"
STAGE_LOGGED = "0 logging policy (as logged)"
STAGE_3 = "3 batch model, no real-time context"
STAGE_5 = "5 full model + decision policy"
#: reference row: stage 5's decision policy fed the TRUE propensities (what the policy is worth with a perfect model)
STAGE_POLICY_CEILING = "5 policy with true propensities (ceiling)"
#: the NBA row's within-action summaries in `model_quality` (value x rows weighted means over actions)
WITHIN_ACTION_COLUMNS = (
    "within_action_spearman",
    "within_action_auc",
    "within_action_bayes_auc",
    "within_action_spearman_candidates",
)


@dataclass(frozen=True)
class EvaluationOptions:
    """Knobs of one evaluation: how many held-out decision points, the sampling seed, the stage-3 tuning budget,
    whether to log to MLflow, and which registry aliases to evaluate."""

    decisions: int = 2000
    seed: int = 0
    stage3_trials: int = 2
    log_mlflow: bool = True
    nba_alias: str = "champion"
    churn_alias: str = "champion"


@dataclass
class EvaluationReport:
    """Everything `nextbest evaluate` prints and logs."""

    decisions: int
    ladder: pd.DataFrame
    ope: pd.DataFrame
    model_quality: pd.DataFrame
    ope_by_stage: pd.DataFrame = field(default_factory=pd.DataFrame)
    choice_mix: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: NBA model, per action: within-action Spearman vs the truth and AUC vs the outcome (`action_quality`)
    action_quality: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: NBA model, per action kind: calibration (ECE vs outcomes and vs the truth)
    kind_calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    differences: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: stage 5 at list price vs personalised pricing vs the truth's optimal price (`training.pricing_eval`)
    pricing: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: per stage, the fairness check of its choices (`nextbest.fairness`; decision points as units): lowest ratio
    fairness: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None
    experiment_name: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: per stage value / conversions / share, OPE estimates, model AUCs."""
        out: dict[str, float] = {}
        for _, row in self.ladder.iterrows():
            key = _metric_key(str(row["stage"]))
            out[f"{key}.value_per_1000"] = float(row["value_per_1000"])
            out[f"{key}.conversions_per_1000"] = float(row["conversions_per_1000"])
            for col in ("incremental_conversions_per_1000", "contact_cost_per_1000"):
                if col in row and not pd.isna(row[col]):
                    out[f"{key}.{col}"] = float(row[col])
            if not pd.isna(row["share_of_oracle_value"]):
                out[f"{key}.share_of_oracle"] = float(row["share_of_oracle_value"])
        for _, row in self.ope.iterrows():
            out[f"ope.{row['estimator']}.value_per_1000"] = float(row["estimate"])
            out[f"ope.{row['estimator']}.abs_error_vs_truth"] = float(abs(row["estimate"] - row["truth"]))
        for _, row in self.differences.iterrows():
            key = f"diff.{_metric_key(str(row['stage']))[7:]}_minus_{_metric_key(str(row['minus']))[7:]}"
            out[f"{key}.per_1000"] = float(row["diff_per_1000"])
            out[f"{key}.std_error"] = float(row["std_error"])
        for _, row in self.model_quality.iterrows():
            out[f"quality.{row['model']}.roc_auc"] = float(row["roc_auc"])
            out[f"quality.{row['model']}.bayes_auc"] = float(row["bayes_optimal_auc"])
            for col in ("ece", "ece_vs_truth", "bayes_ece"):
                if col in row and not pd.isna(row[col]):
                    out[f"quality.{row['model']}.{col}"] = float(row[col])
            for col in WITHIN_ACTION_COLUMNS:
                if col in row and not pd.isna(row[col]):
                    out[f"quality.{row['model']}.{col}"] = float(row[col])
        for _, row in self.action_quality.iterrows():
            for col in ("spearman_vs_truth", "roc_auc", "bayes_auc", "spearman_vs_truth_candidates"):
                if col in row and not pd.isna(row[col]):
                    out[f"quality.nba.action.{row['action_id']}.{col}"] = float(row[col])
        for _, row in self.kind_calibration.iterrows():
            for col in ("ece", "ece_vs_truth"):
                out[f"quality.nba.kind.{row['kind']}.{col}"] = float(row[col])
        for _, row in self.fairness.iterrows():
            out[f"{_metric_key(str(row['stage']))}.fairness_min_ratio"] = float(row["min_ratio"])
        return {k: v for k, v in out.items() if np.isfinite(v)}

    def as_json(self) -> dict[str, Any]:
        """Every table of the report as records (the `report.json` artefact of the MLflow run)."""
        return {
            "params": self.params,
            "notes": self.notes,
            "ladder": self.ladder.to_dict("records"),
            "ope": self.ope.to_dict("records"),
            "ope_by_stage": self.ope_by_stage.to_dict("records"),
            "model_quality": self.model_quality.to_dict("records"),
            "action_quality": self.action_quality.to_dict("records"),
            "kind_calibration": self.kind_calibration.to_dict("records"),
            "differences": self.differences.to_dict("records"),
            "pricing": self.pricing.to_dict("records"),
            "fairness": self.fairness.to_dict("records"),
        }

    def write_json(self, path: Path) -> Path:
        """Write `as_json` (with the run id) to `path` (parents created); NaN becomes null. Returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"run_id": self.run_id, **self.as_json()}
        path.write_text(json.dumps(_json_safe(payload), indent=2, default=str))
        return path


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null (strict JSON), recursively through dicts and lists."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _metric_key(stage: str) -> str:
    word = stage.split(" (")[0].replace("+", "plus").replace(",", "")
    return "ladder." + "_".join(word.lower().split())


# --------------------------------------------------------------------------------------------- held-out traffic


def sample_decisions(test: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Up to `n` held-out logged contacts as decision points (seeded), with a dense `decision_id`."""
    if test.empty:
        raise DataError("the held-out split holds no logged contacts")
    take = test.sample(n=min(n, len(test)), random_state=seed) if len(test) > n else test
    out = take.sort_values(["event_timestamp", "contact_id"]).reset_index(drop=True)
    out.insert(0, ladder.DECISION_ID, np.arange(len(out), dtype=np.int64))
    out["signal"] = out["trigger"].where(out["trigger"].ne("scheduled"), None) if "trigger" in out else None
    return out


def profiles_at(decisions: pd.DataFrame, customers: pd.DataFrame, holdings: pd.DataFrame) -> pd.DataFrame:
    """The source profile (latest row at or before the decision time) and open holdings per decision point.

    Returns decision_id, age, segment, risk_band, vulnerable, consent_<channel>..., holdings (frozenset).
    """
    left = decisions[[ladder.DECISION_ID, "customer_id", "event_timestamp"]].copy()
    left["event_timestamp"] = pd.to_datetime(left["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
    right = customers.copy()
    right["valid_from"] = pd.to_datetime(right["valid_from"], utc=True).astype("datetime64[us, UTC]")
    merged = pd.merge_asof(
        left.sort_values("event_timestamp"),
        right.sort_values("valid_from"),
        left_on="event_timestamp",
        right_on="valid_from",
        by="customer_id",
        direction="backward",
    )
    if merged["birth_year"].isna().any():
        # A contact before the customer's first profile row breaks the data contract.
        raise DataError("some decision points precede the customer's first profile row (customers.valid_from)")
    merged["age"] = merged["event_timestamp"].dt.year - merged["birth_year"].astype(int)
    h = holdings[["customer_id", "product", "opened_at", "closed_at"]].merge(
        left[[ladder.DECISION_ID, "customer_id", "event_timestamp"]], on="customer_id"
    )
    opened = pd.to_datetime(h["opened_at"], utc=True)
    closed = pd.to_datetime(h["closed_at"], utc=True)
    open_now = (opened <= h["event_timestamp"]) & (closed.isna() | (closed > h["event_timestamp"]))
    held = h[open_now].groupby(ladder.DECISION_ID)["product"].agg(frozenset)
    merged["holdings"] = merged[ladder.DECISION_ID].map(held)
    merged["holdings"] = merged["holdings"].apply(lambda s: s if isinstance(s, frozenset) else frozenset())
    keep = [ladder.DECISION_ID, "age", "segment", "risk_band", "vulnerable", "holdings"]
    keep += [c for c in merged.columns if c.startswith("consent_")]
    return merged[keep].sort_values(ladder.DECISION_ID).reset_index(drop=True)


def screen_candidates(decisions: pd.DataFrame, profiles: pd.DataFrame, policy: DecisionPolicy) -> pd.DataFrame:
    """One row per (decision point, action) the serving policy's eligibility and consent/suitability rules allow.

    Columns: decision_id, action_id, kind, value (catalogue order within a decision). Distress rules are evaluated on
    the decision point's features, as the service does.
    """
    from nextbest.policy import CustomerView

    catalogue = policy.catalogue
    prof = profiles.set_index(ladder.DECISION_ID)
    feature_rows = decisions.set_index(ladder.DECISION_ID)
    rule_features = sorted({r.feature for r in policy.config.distress_rules} & set(feature_rows.columns))
    rows: list[tuple[int, str, str, float]] = []
    for decision_id, channel in zip(decisions[ladder.DECISION_ID], decisions["channel"], strict=True):
        p = prof.loc[decision_id]
        feats = {f: feature_rows.at[decision_id, f] for f in rule_features}
        view = CustomerView(
            customer_id=int(feature_rows.at[decision_id, "customer_id"]),
            known=True,
            age=float(p["age"]),
            segment=str(p["segment"]),
            risk_band=str(p["risk_band"]),
            holdings=p["holdings"],
            # The policy names the consent flag per channel; the source profile carries flags of the same names.
            consents={ch: bool(p.get(col, False)) for ch, col in policy.config.profile.consent.items()},
            vulnerable=bool(p["vulnerable"]),
            distress_reasons=tuple(r.code for r in policy.config.distress_rules if r.matches(feats)),
        )
        for action in catalogue.actions:
            if policy.eligibility_rule(action, view, channel) is None and (
                policy.suitability_rule(action, view, channel) is None
            ):
                rows.append((int(decision_id), action.id, action.kind, float(action.value)))
    return pd.DataFrame(rows, columns=[ladder.DECISION_ID, ladder.ACTION_ID, "kind", "value"])


def candidate_features(decisions: pd.DataFrame, candidates: pd.DataFrame, catalogue: Catalogue) -> pd.DataFrame:
    """Candidates with the decision point's features and the candidate action's attributes (feature repo helper),
    so any NBA model scores every candidate of a decision in one batch, exactly as the service does."""
    from nextbest import features as nb_features

    attributes = [*nb_features.ACTION_FEATURES, *nb_features.RELEVANCE_FEATURES]
    action_cols = [c for c in attributes if c in decisions.columns]
    base = decisions.drop(columns=[*action_cols, ladder.ACTION_ID], errors="ignore")
    frame = candidates.merge(base, on=ladder.DECISION_ID, how="left", validate="many_to_one")
    return nb_features.add_relevance_features(nb_features.add_action_features(frame, catalogue), catalogue)


def attach_truth(candidates: pd.DataFrame, world: Any) -> pd.DataFrame:
    """`p_true` and `p_organic` for every candidate from the simulator's truth (one vectorized call each).

    The decision points are logged contacts, whose triggering signal is already in the world's context signals
    before the decision time, so no `signal` is passed: passing it again would restart its clock at the decision
    time and overstate the context (with it omitted the truth reproduces `contact_truth` exactly).
    """
    query = pd.DataFrame(
        {
            "customer_id": candidates["customer_id"].to_numpy(),
            "action_id": candidates[ladder.ACTION_ID].to_numpy(),
            "channel": candidates["channel"].to_numpy(),
            "ts": pd.to_datetime(candidates["event_timestamp"], utc=True).to_numpy(),
            "location_type": candidates["location_type"].to_numpy(),
        }
    )
    query["ts"] = pd.to_datetime(query["ts"], utc=True)
    p = np.asarray(world.p_accept(query), dtype=float)
    if p.shape != (len(candidates),) or np.isnan(p).any():
        raise DataError("the truth returned no probability for some candidates")
    organic = np.asarray(world.p_organic(query[["customer_id", "action_id", "ts"]]), dtype=float)
    if organic.shape != (len(candidates),) or np.isnan(organic).any():
        raise DataError("the truth returned no organic probability for some candidates")
    out = candidates.copy()
    out["p_true"] = p
    out[ladder.P_ORGANIC] = organic
    return out


def attach_contact_cost(candidates: pd.DataFrame, catalogue: Catalogue) -> pd.DataFrame:
    """`contact_cost` per candidate: the catalogue's cost of delivering one action on the decision's channel."""
    channels = candidates["channel"].astype(str)
    unknown = sorted(set(channels) - set(catalogue.channels))
    if unknown:
        raise DataError(f"decision points on channel(s) {unknown} the catalogue does not know")
    costs = {ch: catalogue.channel_cost(ch) for ch in catalogue.channels}
    return candidates.assign(**{ladder.CONTACT_COST: channels.map(costs).to_numpy(dtype=float)})


def relationship_values(decisions: pd.DataFrame, policy: DecisionPolicy) -> pd.Series:
    """Per decision point, what the bank loses if the customer leaves: the decision policy's value at risk (a share
    of the balances at decision time, capped), built from the same features the service reads."""
    from nextbest.policy import customer_view

    out = {}
    for _, row in decisions.iterrows():
        feats = {k: (None if _is_missing(v) else v) for k, v in row.items()}
        out[int(row[ladder.DECISION_ID])] = customer_view(int(row["customer_id"]), feats, policy.config).value_at_risk
    return pd.Series(out, dtype=float)


def attach_churn_value(
    candidates: pd.DataFrame, decisions: pd.DataFrame, world: Any, policy: DecisionPolicy
) -> pd.DataFrame:
    """`churn_value` per candidate: the truth's prevented churn after an acceptance x the relationship's value.

    The ladder credits it to every stage and the oracle alike (`ladder.credited_value`); see the ladder's docstring.
    """
    query = pd.DataFrame(
        {
            "customer_id": candidates["customer_id"].to_numpy(),
            "action_id": candidates[ladder.ACTION_ID].to_numpy(),
            "ts": pd.to_datetime(candidates["event_timestamp"], utc=True).to_numpy(),
        }
    )
    query["ts"] = pd.to_datetime(query["ts"], utc=True)
    prevented = np.asarray(world.churn_prevented(query), dtype=float)
    worth = candidates[ladder.DECISION_ID].map(relationship_values(decisions, policy)).to_numpy(dtype=float)
    if np.isnan(worth).any() or prevented.shape != (len(candidates),):
        raise DataError("no relationship value or prevented churn for some candidates")
    out = candidates.copy()
    out["churn_prevented"] = prevented
    out[ladder.CHURN_VALUE] = prevented * worth
    return out


def heldout_candidates(
    settings: Settings, decisions: pd.DataFrame, train: pd.DataFrame, world: Any, policy: DecisionPolicy
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ladder's candidates (eligible actions per decision point, with features, `p_true`, `p_organic`,
    `churn_value`, `contact_cost`, segment and age band) and the training period's logged contacts stages 1 and 2
    learn from."""
    from training.datasets import read_source

    catalogue = policy.catalogue
    customers = read_source(settings, "customers")
    holdings = read_source(settings, "holdings")
    profiles = profiles_at(decisions, customers, holdings)
    cands = screen_candidates(decisions, profiles, policy)
    cands = candidate_features(decisions, cands, catalogue)
    cands = attach_truth(cands, world)
    cands = attach_churn_value(cands, decisions, world, policy)
    cands = attach_contact_cost(cands, catalogue)
    prof = profiles.set_index(ladder.DECISION_ID)
    cands["segment"] = cands[ladder.DECISION_ID].map(prof["segment"])
    cands["age_band"] = cands[ladder.DECISION_ID].map(pd.Series(ladder.age_band(prof["age"]), prof.index))

    # Stages 1 and 2 learn from the training period's logged contacts (the oldest split).
    train_rows = train.reset_index(drop=True).copy()
    train_rows.insert(0, ladder.DECISION_ID, np.arange(len(train_rows)))
    train_prof = profiles_at(train_rows, customers, holdings)
    train_contacts = pd.DataFrame(
        {
            ladder.ACTION_ID: train_rows[ladder.ACTION_ID],
            "accepted": train_rows["label"].astype(bool),
            "segment": train_prof["segment"].to_numpy(),
            "age_band": ladder.age_band(train_prof["age"]),
        }
    )
    return cands, train_contacts


# --------------------------------------------------------------------------------------------- policies


def stage5_picks(
    scored: pd.DataFrame,
    decisions: pd.DataFrame,
    policy: DecisionPolicy,
    p_model: np.ndarray,
    churn_risk: pd.Series | None,
) -> Iterator[tuple[int, RankedAction | None]]:
    """Stage 5 per decision point: the serving policy's arbitration (priority, triggers, floors, price) over the
    model's propensities; yields the decision id and the top action (None: nothing is shown)."""
    from nextbest.policy import DecisionContext, customer_view

    catalogue = policy.catalogue
    scored = scored.assign(_p=p_model)
    dec = decisions.set_index(ladder.DECISION_ID)
    for decision_id, group in scored.groupby(ladder.DECISION_ID, sort=True):
        row = dec.loc[decision_id]
        # The same view of the customer the service builds from its online features (value at risk, distress).
        feats = {k: (None if _is_missing(v) else v) for k, v in row.items()}
        view = customer_view(int(row["customer_id"]), feats, policy.config)
        context = DecisionContext(
            location_type=_none_if_na(row.get("location_type")), event=_none_if_na(row.get("signal"))
        )
        actions = [catalogue.action(a) for a in group[ladder.ACTION_ID]]
        risk = None if churn_risk is None else float(churn_risk.get(decision_id, np.nan))
        ranked, _ = policy.arbitrate(
            actions,
            group["_p"].to_numpy(),
            view,
            str(row["channel"]),
            context,
            feats,
            None if risk is None or np.isnan(risk) else risk,
        )
        top, _ = policy.top_k(ranked, 1)
        yield int(decision_id), (top[0] if top else None)


def stage5_choices(
    scored: pd.DataFrame,
    decisions: pd.DataFrame,
    policy: DecisionPolicy,
    p_model: np.ndarray,
    churn_risk: pd.Series | None,
) -> pd.Series:
    """Stage 5: the serving policy's arbitration (priority, triggers, floors) over the model's propensities."""
    chosen = {
        decision_id: (pick.action_id if pick else None)
        for decision_id, pick in stage5_picks(scored, decisions, policy, p_model, churn_risk)
    }
    return pd.Series(chosen, dtype=object).reindex(decisions[ladder.DECISION_ID].to_numpy())


def choice_mix(choices: dict[str, pd.Series], catalogue: Catalogue) -> pd.DataFrame:
    """Per stage, the share of decisions answered with a sales, retention or service action, or with nothing, and
    the most frequent action: what explains a stage's value (service actions earn little but can outrank sales)."""
    kind = {a.id: a.kind for a in catalogue.actions}
    rows = []
    for name, chosen in choices.items():
        kinds = chosen.map(lambda a: kind.get(a, "nothing") if a is not None else "nothing")
        shares = kinds.value_counts(normalize=True)
        top = chosen.dropna().value_counts()
        rows.append(
            {
                "stage": name,
                **{k: float(shares.get(k, 0.0)) for k in ("sales", "retention", "service", "nothing")},
                "top_action": f"{top.index[0]} ({top.iloc[0] / len(chosen):.0%})" if len(top) else "-",
            }
        )
    return pd.DataFrame(rows)


def _q_of(q_all: pd.DataFrame, chosen: pd.Series) -> pd.Series:
    """The reward model's expected value of each decision's chosen action (decisions showing nothing: absent)."""
    shown = chosen.dropna()
    picks = pd.DataFrame({ladder.DECISION_ID: shown.index.to_numpy(), ladder.ACTION_ID: shown.to_numpy()})
    return picks.merge(q_all, on=[ladder.DECISION_ID, ladder.ACTION_ID], how="left").set_index(ladder.DECISION_ID)["_q"]


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _none_if_na(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) or pd.isna(value) else str(value)


def _expected_value_policy(name: str, scores: np.ndarray) -> ladder.ScorePolicy:
    values = scores
    return ladder.ScorePolicy(name=name, priority=lambda c: values * c["value"].to_numpy())


# --------------------------------------------------------------------------------------------- OPE and quality


def off_policy_table(
    decisions: pd.DataFrame,
    chosen: pd.Series,
    q_logged: np.ndarray,
    q_chosen: pd.Series,
    values: dict[str, float],
    truth_per_1000: float,
    contact_cost: np.ndarray | None = None,
) -> pd.DataFrame:
    """IPS, SNIPS and DR of the target policy's value per 1,000 decisions from the logs, beside its true value.

    Reward of a logged decision: the logged action's value if accepted, else 0, minus the logged contact's cost
    (`contact_cost`, per decision; none when omitted). The target policy is deterministic: its propensity for the
    logged action is 1 if it would have shown the same action, else 0. Where it shows nothing its reward is 0
    (IPS and DR: a zero term). SNIPS normalises by the weights of the decisions the target policy shows something
    at (the logs hold no "nothing"), so its mean per shown decision is scaled by the share of decisions shown.
    """
    logged_action = decisions[ladder.ACTION_ID].to_numpy()
    logged_value = np.array([values[a] for a in logged_action])
    cost = np.zeros(len(decisions)) if contact_cost is None else np.asarray(contact_cost, dtype=float)
    if cost.shape != (len(decisions),):
        raise DataError(f"contact_cost has shape {cost.shape}; expected ({len(decisions)},)")
    rewards = decisions["label"].to_numpy(dtype=float) * logged_value - cost
    target = chosen.reindex(decisions[ladder.DECISION_ID].to_numpy()).to_numpy()
    target_prop = (target == logged_action).astype(float)
    q_target = q_chosen.reindex(decisions[ladder.DECISION_ID].to_numpy()).fillna(0.0).to_numpy(dtype=float)
    propensity = decisions["logging_propensity"].to_numpy(dtype=float)
    estimates = estimate_all(rewards, propensity, target_prop, q_logged, q_target)
    shows = pd.notna(target)
    if not shows.all() and shows.any():
        shown_only = snips(rewards[shows], propensity[shows], target_prop[shows])
        share = float(shows.mean())
        estimates["snips"] = replace(
            shown_only, value=share * shown_only.value, std_error=share * shown_only.std_error, n=len(rewards)
        )
    rows = []
    for name, est in estimates.items():
        lo, hi = est.ci95()
        rows.append(
            {
                "estimator": name,
                "estimate": 1000 * est.value,
                "std_error": 1000 * est.std_error,
                "ci95_low": 1000 * lo,
                "ci95_high": 1000 * hi,
                "truth": truth_per_1000,
                "truth_in_ci95": bool(lo * 1000 <= truth_per_1000 <= hi * 1000),
                "matched_logs": int(target_prop.sum()),
                "effective_sample_size": round(est.effective_sample_size, 1),
            }
        )
    return pd.DataFrame(rows)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype=float)
    return float(roc_auc_score(y, p)) if 0 < y.mean() < 1 else float("nan")


def quality_row(
    model: str, version: str | None, y: np.ndarray, p_model: np.ndarray, p_true: np.ndarray, holdout: str
) -> dict[str, Any]:
    """The model's AUC beside the Bayes-optimal AUC of the same rows (the truth's probabilities as scores), and
    calibration: ECE vs the outcomes (10 equal-mass bins), vs the true probabilities (the same bins, no outcome
    noise), and the truth's own ECE vs the outcomes (how well the reference itself matches the label)."""
    from training.metrics import calibration_by_group, expected_calibration_error

    auc, bayes = _auc(y, p_model), _auc(y, p_true)
    (calibration,) = calibration_by_group(np.zeros(len(y)), y, p_model, p_true)
    return {
        "model": model,
        "version": version or "-",
        "holdout": holdout,
        "rows": len(y),
        "positives": int(np.sum(y)),
        "roc_auc": auc,
        "bayes_optimal_auc": bayes,
        "gap_to_ceiling": bayes - auc,
        "ece": calibration["ece"],
        "ece_vs_truth": calibration["ece_vs_truth"],
        "bayes_ece": expected_calibration_error(y, p_true),
    }


# --------------------------------------------------------------------------------------------- the job


def _holdout_overlap_notes(settings: Settings, models: list[LoadedModel | None], holdout_start: Any) -> list[str]:
    """Warn when a model's training or validation data reach into the evaluation holdout (it would flatter it).

    The training run records its split ranges as params (`split.valid.end`); a champion trained on more recent data
    than this world's holdout (e.g. retrained later) is flagged rather than silently scored on what it has seen. A
    label known only after its row (churn, `data.horizon_days`) is flagged when it was known after the holdout
    starts (a churn champion trained before `datasets.label_known_split` learnt the holdout's closures).
    """
    from nextbest.models.registry import mlflow_client

    notes = []
    client = mlflow_client(settings)
    start = pd.Timestamp(holdout_start)
    for model in models:
        if model is None or not model.run_id:
            continue
        try:
            params = client.get_run(model.run_id).data.params
        except Exception as exc:  # a missing run should not stop the evaluation, only the check
            logger.warning("cannot check the training window of %s: %s", model.name, exc)
            continue
        valid_end, horizon = params.get("split.valid.end"), params.get("data.horizon_days")
        if valid_end and pd.Timestamp(valid_end) >= start:
            notes.append(
                f"{model.name} v{model.version} was trained/validated on data up to {valid_end}, inside the "
                f"evaluation holdout (from {start}): its stages are flattered; retrain or evaluate a newer world"
            )
        elif valid_end and horizon and pd.Timestamp(valid_end) + pd.Timedelta(days=float(horizon)) > start:
            notes.append(
                f"{model.name} v{model.version} learnt labels ({horizon}-day horizon) from snapshots up to "
                f"{valid_end}, known only after the evaluation holdout starts ({start}): it has seen the holdout's "
                "outcomes; retrain it (the trainer now learns only labels known before its test split)"
            )
    return notes


def _load_truth(settings: Settings) -> Any:
    try:
        from nextbest.simulator.truth import TrueWorld
    except ImportError as exc:  # pragma: no cover - the simulator ships with the package
        raise NotReadyError("the simulator's truth API (nextbest.simulator.truth) is not available") from exc
    if not (settings.truth_dir / "world.json").is_file():
        raise NotReadyError(
            f"no simulated truth under {settings.truth_dir}: the ladder needs a simulated world "
            "(run `nextbest simulate`); a bank's own data has no oracle"
        )
    return TrueWorld.load(settings.world_dir)


def _models(settings: Settings, options: EvaluationOptions) -> tuple[LoadedModel, LoadedModel | None, list[str]]:
    """The project's action model (the NBA model) and its policy's churn model, at the options' aliases."""
    from nextbest.models.artefact import load_model
    from nextbest.project import project_of

    project = project_of(settings)
    _serving, _catalogue, policy = project.decisions()
    if project.kind != "genome" or project.action_model is None:
        raise ConfigError(f"the ladder evaluates the simulated bank's action model; project {project.name!r} has none")
    notes = []
    nba = load_model(project.action_model, options.nba_alias, settings)
    churn = None
    if policy.churn_model is None:
        notes.append("no churn model in the policy: stage 5 arbitrates retention without churn risk")
    else:
        try:
            churn = load_model(policy.churn_model, options.churn_alias, settings)
        except NotReadyError:
            notes.append("no churn champion: stage 5 arbitrates retention without churn risk")
    return nba, churn, notes


def context_features(feature_names: list[str]) -> list[str]:
    """The model inputs that carry the context of the moment (the feature repo's `MOMENT_FIELDS` and the relevance
    features computed from them)."""
    from feature_repo.actions import feature_group
    from nextbest.catalogue import load_catalogue

    moment = feature_group("moment", load_catalogue())
    return [f for f in feature_names if f in moment]


def train_stage3_model(settings: Settings, nba_set: TrainingSet, trials: int, seed: int) -> LoadedModel:
    """Train the NBA model WITHOUT the real-time context features, on the same time split as training."""
    excluded = context_features(nba_set.feature_names)
    if not excluded:
        raise DataError("the NBA feature set has no real-time context features to remove for stage 3")
    reduced = nba_set.without_features(excluded)
    logger.info(
        "stage 3: NBA model without %d context features, %d features, %d trials",
        len(excluded),
        len(reduced.feature_names),
        trials,
    )
    model = fit_nba_in_memory(settings, reduced, trials, seed, name="nba_no_context")
    model.info["excluded_features"] = excluded
    return model


def fit_nba_in_memory(
    settings: Settings, nba_set: TrainingSet, trials: int, seed: int, name: str = "nba_yardstick"
) -> LoadedModel:
    """Tune, fit and calibrate an NBA model on the training time split, in memory, with the training settings' IPS
    weighting (the same recipe as `pipeline.fit_and_log`, smaller round budget).

    A yardstick for the ladder and its ablations (`benchmarks/ladder_ablations.py`), never registered, so it gets
    no MLflow run of its own (the evaluation run records its size).
    """
    from nextbest.models.artefact import LoadedModel, matrix_from_frame
    from nextbest.models.calibration import fit_calibrator
    from training.datasets import time_split
    from training.tune import TuningConfig, booster_params, fit_booster, make_tuning_data, run_study
    from training.weighting import nba_weights

    splits = time_split(nba_set.frame)
    names = nba_set.feature_names
    x_valid = matrix_from_frame(splits.valid, names)
    w_train = nba_weights(splits.train, settings.training.nba_ips_clip)
    w_valid = nba_weights(splits.valid, settings.training.nba_ips_clip)
    data = make_tuning_data(
        matrix_from_frame(splits.train, names),
        splits.train["label"].to_numpy(),
        x_valid,
        splits.valid["label"].to_numpy(),
        names,
        w_train=w_train,
        w_valid=w_valid,
    )
    # One thread: on a busy 2-core machine multithreaded XGBoost spin-waits and ran 4x slower than one thread.
    config = TuningConfig(max_rounds=200, early_stopping_rounds=20, nthread=1)
    study = run_study(data, trials, study_name=f"nextbest-{name}", storage=None, seed=seed, config=config)
    booster = fit_booster(booster_params(study.best_params, seed=seed, nthread=1), data, config)
    margin = booster.inplace_predict(x_valid, predict_type="margin")
    calibrator = fit_calibrator(splits.valid["label"].to_numpy(), margin, sample_weight=w_valid)
    return LoadedModel(
        name=name, version=None, run_id=None, booster=booster, calibrator=calibrator, feature_names=names, info={}
    )


def run_evaluation(
    settings: Settings,
    options: EvaluationOptions | None = None,
    stage3_model: Callable[[Settings, TrainingSet, int, int], LoadedModel] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvaluationReport:
    """The whole evaluation: ladder, OPE beside the truth, model quality beside the ceiling; logged to MLflow.

    The steps, in order: load the truth, policy and registered models (`_load_inputs`), sample the held-out
    decision points and their candidates (`_heldout`), score every stage on them (`_stage_choices`, `_ladder`),
    estimate each stage off-policy from the logs (`_off_policy`), measure the models beside the truth
    (`_model_quality`), and assemble the report (`_assemble_report`). Every step appends its caveats to `notes`.
    `progress(next step, steps done, steps)` is called before each step (the command's progress bar).
    """
    options = options or EvaluationOptions()
    notes: list[str] = []
    steps = ["truth and models", "held-out decisions", "stages", "ladder", "off-policy estimates", "model quality"]
    steps += ["report", "MLflow"] if options.log_mlflow else ["report"]
    done = iter(range(len(steps)))

    def step(name: str) -> None:
        if progress is not None:
            progress(name, next(done), len(steps))

    step("truth and models")
    inputs = _load_inputs(settings, options, notes)
    step("held-out decisions")
    held = _heldout(settings, options, inputs, notes)
    step("stages (stage 3 trains its no-context model)")
    stages = _stage_choices(settings, options, inputs, held, stage3_model or train_stage3_model, notes)
    step("ladder")
    result = _ladder(settings, inputs, held, stages)
    step("off-policy estimates")
    ope, ope_by_stage = _off_policy(inputs, held, stages, result.truth_by_stage, notes)
    step("model quality")
    quality = _model_quality(settings, inputs, held, stages, notes)
    step("report")
    report = _assemble_report(settings, options, inputs, held, stages, result, ope, ope_by_stage, quality, notes)
    report.pricing = _pricing(settings, inputs, held, stages, report.notes)
    report.fairness = stage_fairness(settings, held.decisions, stages.choices, inputs.catalogue)
    if options.log_mlflow:
        step("MLflow")
        report.run_id = log_report(settings, report)
    if progress is not None:
        progress("done", len(steps), len(steps))
    return report


@dataclass(frozen=True)
class _Inputs:
    """What every stage shares: the simulator's truth, the catalogue and decision policy, the registered models."""

    world: Any
    catalogue: Catalogue
    policy: DecisionPolicy
    values: dict[str, float]  # catalogue value per action id
    nba: LoadedModel
    churn: LoadedModel | None


@dataclass(frozen=True)
class _Heldout:
    """The held-out traffic: the NBA training set, its test split, the sampled decision points, their candidates."""

    nba_set: TrainingSet
    test: pd.DataFrame
    decisions: pd.DataFrame
    cands: pd.DataFrame
    train_contacts: pd.DataFrame


@dataclass(frozen=True)
class _Stages:
    """Each stage's choice per decision point (keyed by stage name, in ladder order) and what stage 5 used."""

    choices: dict[str, pd.Series]
    stage1: ladder.RankedListPolicy
    stage2_name: str
    p_full: np.ndarray  # the NBA champion's propensity per candidate
    churn_risk: pd.Series | None


@dataclass(frozen=True)
class _LadderResult:
    table: pd.DataFrame
    truth_by_stage: pd.Series  # value per 1,000 decisions, catalogue value only (what off-policy estimates see)
    choice_mix: pd.DataFrame
    differences: pd.DataFrame


def _load_inputs(settings: Settings, options: EvaluationOptions, notes: list[str]) -> _Inputs:
    """Step 1: the truth, the catalogue and decision policy, and the NBA and churn models under evaluation."""
    from nextbest.policy import DecisionPolicy
    from nextbest.project import project_of

    world = _load_truth(settings)
    _serving, catalogue, policy_config = project_of(settings).decisions()
    policy = DecisionPolicy(catalogue, policy_config)
    values = {a.id: float(a.value) for a in catalogue.actions}
    nba, churn, model_notes = _models(settings, options)
    notes.extend(model_notes)
    return _Inputs(world, catalogue, policy, values, nba, churn)


def _heldout(settings: Settings, options: EvaluationOptions, inputs: _Inputs, notes: list[str]) -> _Heldout:
    """Step 2: the decision points sampled from the NBA test split and every candidate the policy allows there."""
    from training.datasets import build_nba_training_set, time_split

    nba_set = build_nba_training_set(settings)
    splits = time_split(nba_set.frame)
    decisions = sample_decisions(splits.test, options.decisions, options.seed)
    overlap = _holdout_overlap_notes(settings, [inputs.nba, inputs.churn], splits.test["event_timestamp"].min())
    notes.extend(overlap)
    logger.info("evaluation: %d decision points from %d held-out contacts", len(decisions), len(splits.test))
    cands, train_contacts = heldout_candidates(settings, decisions, splits.train, inputs.world, inputs.policy)
    return _Heldout(nba_set, splits.test, decisions, cands, train_contacts)


def _stage_choices(
    settings: Settings,
    options: EvaluationOptions,
    inputs: _Inputs,
    held: _Heldout,
    trainer: Callable[[Settings, TrainingSet, int, int], LoadedModel],
    notes: list[str],
) -> _Stages:
    """Step 3: every ladder stage's choice at every decision point (1, 2, 3, 5 and the oracle)."""
    cands, decisions = held.cands, held.decisions
    stage1 = ladder.fit_one_offer(held.train_contacts, inputs.values)
    stage2 = ladder.fit_segment_rules(held.train_contacts, inputs.values)

    # Stage 3: a model that never saw real-time context.
    batch_model = trainer(settings, held.nba_set, options.stage3_trials, settings.training.seed)
    p_batch = batch_model.predict_frame(cands)
    stage3 = _expected_value_policy(STAGE_3, p_batch)

    # Stage 5: the champion with the decision policy.
    p_full = inputs.nba.predict_frame(cands)
    churn_risk = None
    churn = inputs.churn
    if churn is not None:
        missing = [f for f in churn.feature_names if f not in decisions.columns]
        if missing:
            notes.append(f"churn model needs {len(missing)} features absent from nba_v1: no churn risk in stage 5")
        else:
            churn_risk = pd.Series(churn.predict_frame(decisions), index=decisions[ladder.DECISION_ID].to_numpy())
    chosen5 = stage5_choices(cands, decisions, inputs.policy, p_full, churn_risk)
    oracle = ladder.oracle_policy()
    choices = {
        stage1.name: stage1.choose(cands),
        stage2.name: stage2.choose(cands),
        stage3.name: stage3.choose(cands),
        STAGE_5: chosen5,
        oracle.name: oracle.choose(cands),
    }
    return _Stages(choices, stage1, stage2.name, p_full, churn_risk)


def _pricing(settings: Settings, inputs: _Inputs, held: _Heldout, stages: _Stages, notes: list[str]) -> pd.DataFrame:
    """Stage 5 at list price beside personalised pricing (`training.pricing_eval`; empty: nothing is priced)."""
    from training.pricing_eval import evaluate_pricing

    return evaluate_pricing(
        settings, held.cands, held.decisions, inputs.policy, stages.p_full, stages.churn_risk, inputs.world, notes
    )


def stage_fairness(
    settings: Settings, decisions: pd.DataFrame, choices: dict[str, pd.Series], catalogue: Catalogue
) -> pd.DataFrame:
    """Per stage, the fairness check of its choices (`nextbest.fairness`): each decision point a unit, offered
    credit when the stage shows a credit action there, grouped by the point's age band (the project's age feature)
    and protected attributes; the lowest judged ratio, the number flagged and what."""
    from nextbest.fairness import age_feature, credit_actions, fairness_report, group_frame, protected_values
    from nextbest.project import project_of

    project = project_of(settings)
    spec = project.fairness
    index = pd.Index(decisions[ladder.DECISION_ID].to_numpy(), name="unit")
    age = age_feature(project)
    ages = pd.Series(decisions[age].to_numpy(), index=index) if age and age in decisions else None
    protected = None
    if spec.protected and "customer_id" in decisions:
        values = protected_values(spec, project)
        protected = values.reindex(decisions["customer_id"].astype(str).to_numpy()).set_axis(index)
    groups = group_frame(index, ages, spec, protected)
    credit = credit_actions(catalogue)
    rows = []
    for stage, chosen in choices.items():
        offered = chosen.reindex(index).isin(credit)
        report = fairness_report(groups, offered, spec)
        rows.append(
            {"stage": stage, "min_ratio": report.min_ratio, "flagged": len(report.flagged),
             "credit_offer_rate": float(offered.mean()), "flags": "; ".join(report.reasons())}
        )  # fmt: skip
    return pd.DataFrame(rows)


def _ladder(settings: Settings, inputs: _Inputs, held: _Heldout, stages: _Stages) -> _LadderResult:
    """Step 4: the ladder table (with the random, logged and policy-ceiling reference rows and each stage's share of
    the oracle), the catalogue-only truth per stage, the choice mix and the paired margins between stages."""
    cands, decisions, choices = held.cands, held.decisions, stages.choices
    table = ladder.ladder_table(cands, choices)
    # Splits stage 5's gap to the oracle into the model's part and the policy's part (floors, triggers, boosts).
    p_true = cands["p_true"].to_numpy(dtype=float)
    ceiling = stage5_choices(cands, decisions, inputs.policy, p_true, stages.churn_risk)
    ceiling_row = pd.DataFrame([ladder.score_choices(cands, ceiling, STAGE_POLICY_CEILING).as_dict()])
    table = pd.concat([table.iloc[:-1], ceiling_row, table.iloc[-1:]], ignore_index=True)
    logged_churn = attach_churn_value(decisions, decisions, inputs.world, inputs.policy)[ladder.CHURN_VALUE]
    logged_truth = _logged_truth(
        settings, decisions, inputs.values, logged_churn.to_numpy(dtype=float), inputs.catalogue
    )
    random_row = pd.DataFrame([ladder.score_random_choice(cands, STAGE_RANDOM).as_dict()])
    table = pd.concat([random_row, logged_truth.to_frame(table), table], ignore_index=True)
    oracle_value = float(table["value_per_1000"].iloc[-1])
    table["share_of_oracle_value"] = table["value_per_1000"] / oracle_value if oracle_value > 0 else np.nan
    # Off-policy estimates see only logged rewards (catalogue value when accepted, minus the contact's cost), never
    # the churn a retention offer prevented nor whether the customer would have bought anyway, so they are set
    # beside the truth of that same reward: p_true x catalogue value - contact cost, gross of organic uptake.
    gross = cands.drop(columns=[ladder.CHURN_VALUE, ladder.P_ORGANIC])
    truth_by_stage = ladder.ladder_table(gross, choices).set_index("stage")["value_per_1000"]
    mix = choice_mix(choices, inputs.catalogue)
    # The margins between stages beside their noise (paired on the same decision points).
    s1, s2 = stages.stage1.name, stages.stage2_name
    pairs = [(STAGE_5, STAGE_3), (STAGE_5, s1), (STAGE_5, s2), (STAGE_3, s1)]
    differences = pd.DataFrame([ladder.paired_difference(cands, choices, a, b).as_dict() for a, b in pairs])
    return _LadderResult(table, truth_by_stage, mix, differences)


def _off_policy(
    inputs: _Inputs, held: _Heldout, stages: _Stages, truth_by_stage: pd.Series, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Step 5: off-policy estimates from the logs alone (rewards, logging propensities, the NBA champion as reward
    model), for stage 5 in detail and for every stage in brief, each beside the truth; plus the logging support."""
    decisions, cands, values = held.decisions, held.cands, inputs.values
    # The reward model of DR predicts the same reward the logs measure: p x catalogue value - the contact's cost.
    logged_cost = attach_contact_cost(decisions, inputs.catalogue)[ladder.CONTACT_COST].to_numpy(dtype=float)
    q_logged = inputs.nba.predict_frame(decisions) * decisions[ladder.ACTION_ID].map(values).to_numpy() - logged_cost
    q_all = cands[[ladder.DECISION_ID, ladder.ACTION_ID]].assign(
        _q=stages.p_full * cands["value"].to_numpy() - ladder.contact_costs(cands)
    )
    ope_tables = {
        name: off_policy_table(
            decisions, chosen, q_logged, _q_of(q_all, chosen), values, float(truth_by_stage[name]), logged_cost
        )
        for name, chosen in stages.choices.items()
    }
    ope_by_stage = pd.DataFrame(
        [
            {
                "stage": name,
                "truth": float(truth_by_stage[name]),
                **{f"{r['estimator']}": r["estimate"] for _, r in t.iterrows()},
                "matched_logs": int(t["matched_logs"].iloc[0]),
                "effective_sample_size": float(t["effective_sample_size"].iloc[0]),
            }
            for name, t in ope_tables.items()
        ]
    )
    # Off-policy estimates need the logging policy to have been able to take the evaluated action: where our
    # eligible set is larger than the logger's (n_eligible), a policy's choices may lie outside its support.
    n_cands = cands.groupby(ladder.DECISION_ID).size().reindex(decisions[ladder.DECISION_ID]).fillna(0).to_numpy()
    if "n_eligible" in decisions:
        support = float(np.mean(n_cands <= decisions["n_eligible"].to_numpy()))
        notes.append(
            f"logging support: at {support:.0%} of decision points our candidate set is no larger than the logging "
            "policy's eligible set; elsewhere IPS-type estimates can miss value the logger could never have shown"
        )
    return ope_tables[STAGE_5], ope_by_stage


@dataclass(frozen=True)
class _Quality:
    model_quality: pd.DataFrame
    action_quality: pd.DataFrame
    kind_calibration: pd.DataFrame


def _model_quality(settings: Settings, inputs: _Inputs, held: _Heldout, stages: _Stages, notes: list[str]) -> _Quality:
    """Step 6: model quality on the whole holdout beside the ceiling of the same rows (NBA, and churn if loaded);
    the NBA model also within each action (on the holdout and on the ladder's candidates) and per action kind."""
    from training.datasets import build_churn_training_set

    nba_row, actions, kinds = _nba_quality(settings, inputs.nba, held.test, inputs.catalogue, held.cands, stages.p_full)
    quality = [nba_row]
    if inputs.churn is not None:
        try:
            horizon = _trained_horizon(settings, inputs.churn)
            churn_set = build_churn_training_set(settings, horizon_days=horizon, name=inputs.churn.name)
            quality.append(_churn_quality(inputs.churn, churn_set, inputs.world))
        except DataError as exc:
            notes.append(f"churn quality skipped: {exc}")
    return _Quality(pd.DataFrame(quality), actions, kinds)


def _assemble_report(
    settings: Settings,
    options: EvaluationOptions,
    inputs: _Inputs,
    held: _Heldout,
    stages: _Stages,
    result: _LadderResult,
    ope: pd.DataFrame,
    ope_by_stage: pd.DataFrame,
    quality: _Quality,
    notes: list[str],
) -> EvaluationReport:
    """Step 7: the report, with the run's params (sizes, held-out window, model versions, stage 1's offer)."""
    decisions, test = held.decisions, held.test
    return EvaluationReport(
        decisions=len(decisions),
        ladder=result.table,
        ope=ope,
        ope_by_stage=ope_by_stage,
        choice_mix=result.choice_mix,
        differences=result.differences,
        model_quality=quality.model_quality,
        action_quality=quality.action_quality,
        kind_calibration=quality.kind_calibration,
        notes=notes,
        experiment_name=f"{settings.mlflow.experiment_prefix}-evaluation",
        params={
            "decisions": len(decisions),
            "seed": options.seed,
            "heldout_contacts": len(test),
            "heldout_start": str(test["event_timestamp"].min()),
            "heldout_end": str(test["event_timestamp"].max()),
            "nba_version": inputs.nba.version,
            "churn_version": inputs.churn.version if inputs.churn else None,
            "stage3_trials": options.stage3_trials,
            "stage1_offer": stages.stage1.default[0],
            "candidates_per_decision": round(len(held.cands) / max(len(decisions), 1), 2),
        },
    )


@dataclass(frozen=True)
class _LoggedTruth:
    result: ladder.StageResult
    decisions: int

    def to_frame(self, like: pd.DataFrame) -> pd.DataFrame:
        row = {c: np.nan for c in like.columns}
        row.update(self.result.as_dict())
        return pd.DataFrame([row])


def _logged_truth(
    settings: Settings,
    decisions: pd.DataFrame,
    values: dict[str, float],
    churn_value: np.ndarray,
    catalogue: Catalogue,
) -> _LoggedTruth:
    """True expected incremental value of what the logging policy actually showed at the same decision points,
    credited like every stage (`ladder.expected_value`: the logged contact's p_accept and p_organic from
    `contact_truth`, catalogue value + `churn_value`, minus the channel's contact cost)."""
    truth = pd.read_parquet(
        _truth_table(settings, "contact_truth"), columns=["contact_id", "p_accept", ladder.P_ORGANIC]
    ).set_index("contact_id")
    logged = truth.reindex(decisions["contact_id"].to_numpy())
    if logged.isna().any().any():
        raise DataError("contact_truth lacks some held-out contacts")
    frame = pd.DataFrame(
        {
            ladder.DECISION_ID: decisions[ladder.DECISION_ID].to_numpy(),
            ladder.ACTION_ID: decisions[ladder.ACTION_ID].to_numpy(),
            "value": decisions[ladder.ACTION_ID].map(values).to_numpy(dtype=float),
            "p_true": logged["p_accept"].to_numpy(dtype=float),
            ladder.P_ORGANIC: logged[ladder.P_ORGANIC].to_numpy(dtype=float),
            ladder.CHURN_VALUE: np.asarray(churn_value, dtype=float),
            "channel": decisions["channel"].to_numpy(),
        }
    )
    frame = attach_contact_cost(frame, catalogue)
    result = ladder.score_choices(frame, frame.set_index(ladder.DECISION_ID)[ladder.ACTION_ID], STAGE_LOGGED)
    return _LoggedTruth(result, len(decisions))


def _truth_table(settings: Settings, name: str) -> Path:
    for candidate in (settings.truth_dir / f"{name}.parquet", settings.truth_dir / name):
        if candidate.exists():
            return candidate
    raise NotReadyError(f"truth table {name!r} not found under {settings.truth_dir}")


def _nba_quality(
    settings: Settings,
    nba: LoadedModel,
    test: pd.DataFrame,
    catalogue: Catalogue,
    cands: pd.DataFrame | None = None,
    p_cands: np.ndarray | None = None,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """The NBA row of the quality table (pooled and within-action figures), the per-action table and the per-kind
    calibration table, on the held-out logged contacts (and Spearman also on the ladder's candidates)."""
    truth = pd.read_parquet(_truth_table(settings, "contact_truth"), columns=["contact_id", "p_accept"])
    p_true = test["contact_id"].map(truth.set_index("contact_id")["p_accept"]).to_numpy(dtype=float)
    if np.isnan(p_true).any():
        raise DataError("contact_truth lacks some held-out contacts")
    y, p_model = test["label"].to_numpy(), nba.predict_frame(test)
    row = quality_row(nba.name, nba.version, y, p_model, p_true, "held-out logged contacts")
    actions = test[ladder.ACTION_ID].to_numpy()
    action_table, summary = within_action_quality(actions, y, p_model, p_true, catalogue, cands, p_cands)
    row.update(summary)
    return row, action_table, kind_calibration(actions, y, p_model, p_true, catalogue)


def within_action_quality(
    actions: np.ndarray,
    y: np.ndarray,
    p_model: np.ndarray,
    p_true: np.ndarray,
    catalogue: Catalogue,
    cands: pd.DataFrame | None = None,
    p_cands: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per action, how the model ranks customers WITHIN the action, and the value-weighted means over actions.

    On the rows given (held-out logged contacts): Spearman of the model vs the true p_accept, AUC vs the realised
    outcome and the truth's own AUC (the ceiling). With `cands` (the ladder's candidates with `p_true`) and
    `p_cands` (the model on them): Spearman on every eligible action at every decision point, what a policy ranks.
    Weights: catalogue value x the action's rows, the value at stake (`training.metrics.weighted_mean`). Columns:
    action_id, kind, value, rows, positives, spearman_vs_truth, roc_auc, bayes_auc, weight and, with candidates,
    candidates, spearman_vs_truth_candidates. Summary keys: `WITHIN_ACTION_COLUMNS`.
    """
    from training.metrics import weighted_mean, within_group_ranking

    table = pd.DataFrame(within_group_ranking(actions, y, p_model, p_true)).rename(columns={"group": "action_id"})
    unknown = sorted(set(table["action_id"]) - set(catalogue.action_ids))
    if unknown:
        raise DataError(f"held-out actions {unknown} are not in the offer catalogue")
    table.insert(1, "kind", table["action_id"].map(lambda a: catalogue.action(a).kind))
    table.insert(2, "value", table["action_id"].map(lambda a: float(catalogue.action(a).value)))
    table["weight"] = table["value"] * table["rows"]
    summary = {
        "within_action_spearman": weighted_mean(table["spearman_vs_truth"], table["weight"]),
        "within_action_auc": weighted_mean(table["roc_auc"], table["weight"]),
        "within_action_bayes_auc": weighted_mean(table["bayes_auc"], table["weight"]),
    }
    if cands is not None and p_cands is not None:
        from training.metrics import spearman_correlation

        per = {
            a: (len(g), spearman_correlation(g["p"].to_numpy(), g["t"].to_numpy()))
            for a, g in pd.DataFrame(
                {"a": cands[ladder.ACTION_ID].to_numpy(), "p": np.asarray(p_cands, float), "t": cands["p_true"]}
            ).groupby("a")
        }
        per = pd.DataFrame.from_dict(per, orient="index", columns=["candidates", "rho"])
        table["candidates"] = table["action_id"].map(per["candidates"]).fillna(0).astype(int)
        table["spearman_vs_truth_candidates"] = table["action_id"].map(per["rho"])
        w = table["value"] * table["candidates"]
        summary["within_action_spearman_candidates"] = weighted_mean(table["spearman_vs_truth_candidates"], w)
    return table, summary


def kind_calibration(
    actions: np.ndarray, y: np.ndarray, p_model: np.ndarray, p_true: np.ndarray, catalogue: Catalogue
) -> pd.DataFrame:
    """Calibration per action kind (sales, retention, service): ECE vs outcomes and vs the truth (equal-mass bins)."""
    from training.metrics import calibration_by_group

    kinds = np.array([catalogue.action(a).kind for a in actions])
    return pd.DataFrame(calibration_by_group(kinds, y, p_model, p_true)).rename(columns={"group": "kind"})


def _trained_horizon(settings: Settings, model: LoadedModel) -> int | None:
    """The label horizon the churn model was trained with (its run's `data.horizon_days`), so its quality is
    judged on the label it learnt; None (the settings' horizon) when the run does not say."""
    from nextbest.models.registry import mlflow_client

    if not model.run_id:
        return None
    try:
        value = mlflow_client(settings).get_run(model.run_id).data.params.get("data.horizon_days")
    except Exception as exc:  # a missing run should not stop the evaluation
        logger.warning("cannot read the label horizon of %s: %s", model.name, exc)
        return None
    return int(float(value)) if value else None


def _churn_quality(churn: LoadedModel, churn_set: TrainingSet, world: Any) -> dict[str, Any]:
    from training.datasets import time_split

    test = time_split(churn_set.frame).test
    horizon = int(churn_set.lineage.get("horizon_days", 30))
    p_true = np.zeros(len(test))
    # The truth answers per snapshot time: one vectorized call per distinct snapshot.
    for ts, idx in test.groupby("event_timestamp").indices.items():
        rows = test.iloc[idx]
        p_true[idx] = world.churn_probability(rows["customer_id"].to_numpy(), pd.Timestamp(ts), horizon)
    return quality_row(
        churn.name,
        churn.version,
        test["label"].to_numpy(),
        churn.predict_frame(test),
        p_true,
        f"held-out snapshots, {horizon}-day horizon",
    )


def log_report(settings: Settings, report: EvaluationReport) -> str:
    """One MLflow run in `<prefix>-evaluation`: params, flat metrics, the tables as CSV/markdown/JSON, and the ladder
    as a bar chart beside its table (`evaluation/ladder.png`: value per 1,000 decisions by stage)."""
    import mlflow

    from nextbest.models.registry import use_tracking
    from training.tracking import ensure_experiment

    use_tracking(settings)
    experiment_id = ensure_experiment(settings, report.experiment_name)
    with mlflow.start_run(experiment_id=experiment_id, run_name="ladder") as run:
        mlflow.log_params({k: v for k, v in report.params.items() if v is not None})
        mlflow.log_metrics(report.metrics())
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            for name, frame in (
                ("ladder", report.ladder),
                ("ope", report.ope),
                ("model_quality", report.model_quality),
                ("action_quality", report.action_quality),
                ("kind_calibration", report.kind_calibration),
                ("differences", report.differences),
                ("pricing", report.pricing),
            ):
                frame.to_csv(out / f"{name}.csv", index=False)
                (out / f"{name}.md").write_text(
                    frame.to_markdown(index=False) if _has_tabulate() else frame.to_string()
                )
            if {"stage", "value_per_1000"} <= set(report.ladder.columns) and len(report.ladder):
                from training.plots import ladder_plot

                ladder_plot(report.ladder, out / "ladder.png")  # the chart beside its table
            (out / "report.json").write_text(json.dumps(_json_safe(report.as_json()), indent=2, default=str))
            mlflow.log_artifacts(str(out), artifact_path="evaluation")
        mlflow.set_tags({"nextbest.job": "evaluate", "nextbest.notes": " | ".join(report.notes)[:5000]})
        return run.info.run_id


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
