"""Policy value of an NBA model from the logs alone: SNIPS of a greedy policy on the test split, and the paired
doubly robust comparison of two models' greedy policies that the promotion gate judges (`compare_greedy_policies`).

Training logs this as a model metric so runs can be compared on what matters (value per decision), not only AUC.
The greedy policy scores every catalogue action for each logged decision (the customer's features once, the
action attributes swapped in), keeps the actions allowed on that channel and not ruled out by holdings
(catalogue `requires` / `excludes` against the `has_<product>` features), and takes the highest
propensity x value. Its value is estimated with self-normalised IPS (`training.ope.snips`) against the logging
policy's recorded propensities. The reward is the one the evaluation ladder's off-policy estimates use: the
catalogue value if accepted minus the logged contact's cost (`Catalogue.channel_cost` of its channel; every
candidate of a row goes out on the same channel, so the cost does not change the greedy choice). Organic uptake
and prevented churn are not in the logs, so this is a gross, not an incremental, value. This is a training-time
estimate with approximate eligibility; the evaluation ladder (`nextbest evaluate`) scores the full decision policy
against the simulator's truth.

`compare_greedy_policies` values a challenger's and a champion's greedy policies on the same logged decisions with
doubly robust estimates (`training.ope.doubly_robust`) whose reward model is the mean of the two models' calibrated
probabilities, and gives the paired difference per decision with its standard error: what the promotion gate
(`training.registry`) compares for a model that scores actions, pooled AUC only guarding it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from nextbest.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from nextbest.catalogue import Catalogue
    from nextbest.models.artefact import LoadedModel

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("action_id", "channel", "logging_propensity", "label")


def candidate_scores(model: LoadedModel, frame: pd.DataFrame, catalogue: Catalogue) -> np.ndarray:
    """(rows, actions) calibrated acceptance probabilities: each row re-scored with every action's attributes."""
    from feature_repo.actions import relevance_all, relevance_inputs, relevance_weights
    from nextbest.features import ACTION_FEATURES, RELEVANCE_FEATURES, action_features

    table = action_features(catalogue).set_index("action_id").loc[list(catalogue.action_ids), ACTION_FEATURES]
    cols = [model.feature_names.index(c) for c in ACTION_FEATURES if c in model.feature_names]
    if not cols:
        raise DataError("the model uses no action features: it cannot rank actions")
    used = [c for c in ACTION_FEATURES if c in model.feature_names]
    relevance = [c for c in RELEVANCE_FEATURES if c in model.feature_names]
    if relevance:
        names = relevance_inputs(catalogue)
        inputs = frame[names].to_numpy(dtype=np.float64, na_value=np.nan)
        every = relevance_all(inputs, relevance_weights(catalogue, names))[
            [RELEVANCE_FEATURES.index(c) for c in relevance]
        ]  # (used relevance, rows, actions)
        rel_cols = [model.feature_names.index(c) for c in relevance]
    base = model.frame_to_matrix(frame)
    scores = np.empty((len(frame), len(table)), dtype=np.float64)
    for j, values in enumerate(table[used].to_numpy(dtype=np.float32)):
        X = base.copy()
        X[:, cols] = values
        if relevance:  # the row's relevance for action j, as the service computes it
            X[:, rel_cols] = every[:, :, j].T
        scores[:, j] = model.predict_proba(X)
    return scores


def eligibility_mask(frame: pd.DataFrame, catalogue: Catalogue) -> np.ndarray:
    """(rows, actions) True where the action may be shown on the row's channel given the customer's holdings."""
    mask = np.ones((len(frame), len(catalogue.actions)), dtype=bool)
    channel = frame["channel"].astype(str).to_numpy()
    for j, action in enumerate(catalogue.actions):
        mask[:, j] &= np.isin(channel, action.channels)
        for product in action.eligibility.excludes:
            if f"has_{product}" in frame:
                mask[:, j] &= frame[f"has_{product}"].fillna(0).to_numpy() == 0
        for product in action.eligibility.requires:
            if f"has_{product}" in frame:
                mask[:, j] &= frame[f"has_{product}"].fillna(0).to_numpy() == 1
    return mask


@dataclass(frozen=True)
class _Logged:
    """The logged decisions of a frame, aligned: the logged action's index, its reward (EUR net of the contact's
    cost), the contact cost, the acceptance, the logging propensity, and the (rows, actions) eligibility mask."""

    values: np.ndarray
    logged: np.ndarray
    accepted: np.ndarray
    cost: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray
    mask: np.ndarray


def _logged(frame: pd.DataFrame, catalogue: Catalogue) -> _Logged:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"policy value needs column(s) {', '.join(missing)} in the frame")
    unknown = sorted(set(frame["action_id"].astype(str)) - set(catalogue.action_ids))
    if unknown:
        raise DataError(f"logged action(s) not in the catalogue: {unknown[:10]}")
    values = np.array([a.value for a in catalogue.actions], dtype=float)
    logged = np.array([catalogue.index(a) for a in frame["action_id"].astype(str)], dtype=int)
    mask = eligibility_mask(frame, catalogue)
    # The logged action was eligible when it was shown, whatever our approximate rules say.
    mask[np.arange(len(frame)), logged] = True
    cost = frame["channel"].astype(str).map({ch: catalogue.channel_cost(ch) for ch in catalogue.channels})
    if cost.isna().any():
        raise DataError(
            f"logged rows on channel(s) the catalogue does not know: {sorted(set(frame['channel'][cost.isna()]))}"
        )
    cost_eur = cost.to_numpy(dtype=float)
    accepted = frame["label"].to_numpy(dtype=float)
    return _Logged(
        values=values,
        logged=logged,
        accepted=accepted,
        cost=cost_eur,
        reward=accepted * values[logged] - cost_eur,
        propensity=frame["logging_propensity"].to_numpy(dtype=float),
        mask=mask,
    )


def greedy_actions(scores: np.ndarray, mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row, the index of the eligible action with the highest propensity x value (the greedy policy)."""
    return np.where(mask, scores * values, -np.inf).argmax(axis=1)


def greedy_policy_value(model: LoadedModel, frame: pd.DataFrame, catalogue: Catalogue) -> dict[str, float]:
    """SNIPS estimates (EUR net of contact cost, and acceptances, per decision) of the greedy policy, beside the
    logging policy's."""
    from training.ope import snips

    logs = _logged(frame, catalogue)
    greedy = greedy_actions(candidate_scores(model, frame, catalogue), logs.mask, logs.values)
    target = (greedy == logs.logged).astype(float)
    eur = snips(logs.reward, logs.propensity, target)
    acc = snips(logs.accepted, logs.propensity, target)
    return {
        "policy_value_snips_eur": eur.value,
        "policy_value_snips_eur_se": eur.std_error,
        "policy_accept_snips": acc.value,
        "policy_match_rate": float(target.mean()),
        "policy_ess": eur.effective_sample_size,
        "logging_value_eur": float(logs.reward.mean()),
        "logging_accept_rate": float(logs.accepted.mean()),
    }


@dataclass(frozen=True)
class PolicyComparison:
    """Two models' greedy policies valued on the same logged decisions (doubly robust, EUR net of the contact's
    cost per decision), and their paired difference (challenger minus champion) with its standard error.

    The reward model of both DR estimates is the mean of the two models' calibrated probabilities x the action's
    value: one yardstick for both, so neither model grades its own policy. On a row where both policies pick the
    same action the two DR terms are equal, so the difference's noise comes only from the rows where they disagree.
    """

    challenger_eur: float
    champion_eur: float
    difference_eur: float
    difference_se: float
    #: the same difference by plain IPS (no reward model), as a check on the DR figure
    difference_ips_eur: float
    difference_ips_se: float
    challenger_ess: float
    champion_ess: float
    #: share of the decisions on which the two greedy policies pick the same action
    agreement: float
    logging_eur: float
    rows: int
    #: the SE of the paired per-decision log-loss difference (challenger minus champion) on the logged actions:
    #: how much of a log-loss change is noise on this holdout
    logloss_difference_se: float = 0.0

    @property
    def z(self) -> float:
        if self.difference_se > 0:
            return self.difference_eur / self.difference_se
        return 0.0 if self.difference_eur == 0 else math.copysign(math.inf, self.difference_eur)

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "z": self.z}


def compare_greedy_policies(
    challenger: LoadedModel, champion: LoadedModel, frame: pd.DataFrame, catalogue: Catalogue
) -> PolicyComparison:
    """The challenger's and the champion's greedy policies valued on the logged decisions of `frame` (a holdout of
    NBA rows with `REQUIRED_COLUMNS`), by doubly robust estimates with a shared reward model (`PolicyComparison`)."""
    from training.ope import doubly_robust

    logs = _logged(frame, catalogue)
    s_c = candidate_scores(challenger, frame, catalogue)
    s_k = candidate_scores(champion, frame, catalogue)
    rows = np.arange(len(frame))
    q = 0.5 * (s_c + s_k) * logs.values - logs.cost[:, None]  # the shared reward model, EUR per (row, action)
    q_logged = q[rows, logs.logged]
    chosen = [greedy_actions(scores, logs.mask, logs.values) for scores in (s_c, s_k)]
    match = [(c == logs.logged).astype(float) for c in chosen]
    pairs = list(zip(chosen, match, strict=True))
    dr = [doubly_robust(logs.reward, logs.propensity, m, q_logged, q[rows, c]) for c, m in pairs]
    # The per-decision DR terms of the two policies, paired: q(x, pi(x)) + [pi(x) = a] / p x (r - q(x, a)).
    terms = [q[rows, c] + m / logs.propensity * (logs.reward - q_logged) for c, m in pairs]
    difference, se = _mean_and_se(terms[0] - terms[1])
    ips_difference, ips_se = _mean_and_se((match[0] - match[1]) / logs.propensity * logs.reward)
    loss = [_log_loss_terms(logs.accepted, scores[rows, logs.logged]) for scores in (s_c, s_k)]
    return PolicyComparison(
        challenger_eur=dr[0].value,
        champion_eur=dr[1].value,
        difference_eur=difference,
        difference_se=se,
        difference_ips_eur=ips_difference,
        difference_ips_se=ips_se,
        challenger_ess=dr[0].effective_sample_size,
        champion_ess=dr[1].effective_sample_size,
        agreement=float((chosen[0] == chosen[1]).mean()),
        logging_eur=float(logs.reward.mean()),
        rows=len(frame),
        logloss_difference_se=_mean_and_se(loss[0] - loss[1])[1],
    )


def _mean_and_se(x: np.ndarray) -> tuple[float, float]:
    """The mean of per-decision terms and its standard error (i.i.d. decisions)."""
    n = len(x)
    return float(x.mean()), (float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf)


def _log_loss_terms(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))
