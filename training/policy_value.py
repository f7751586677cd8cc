"""Policy value of an NBA model from the logs alone: SNIPS of a greedy policy on the test split.

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
"""

from __future__ import annotations

import logging
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


def greedy_policy_value(model: LoadedModel, frame: pd.DataFrame, catalogue: Catalogue) -> dict[str, float]:
    """SNIPS estimates (EUR net of contact cost, and acceptances, per decision) of the greedy policy, beside the
    logging policy's."""
    from training.ope import snips

    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"policy value needs column(s) {', '.join(missing)} in the test frame")
    values = np.array([a.value for a in catalogue.actions])
    scores = candidate_scores(model, frame, catalogue)
    mask = eligibility_mask(frame, catalogue)
    logged = np.array([catalogue.index(a) for a in frame["action_id"]])
    # The logged action was eligible when it was shown, whatever our approximate rules say.
    mask[np.arange(len(frame)), logged] = True
    priority = np.where(mask, scores * values, -np.inf)
    greedy = priority.argmax(axis=1)
    target = (greedy == logged).astype(float)
    accepted = frame["label"].to_numpy(dtype=float)
    cost = frame["channel"].astype(str).map({ch: catalogue.channel_cost(ch) for ch in catalogue.channels})
    if cost.isna().any():
        raise DataError(
            f"test rows on channel(s) the catalogue does not know: {sorted(set(frame['channel'][cost.isna()]))}"
        )
    cost = cost.to_numpy(dtype=float)
    reward_eur = accepted * values[logged] - cost
    eur = snips(reward_eur, frame["logging_propensity"].to_numpy(dtype=float), target)
    acc = snips(accepted, frame["logging_propensity"].to_numpy(dtype=float), target)
    return {
        "policy_value_snips_eur": eur.value,
        "policy_value_snips_eur_se": eur.std_error,
        "policy_accept_snips": acc.value,
        "policy_match_rate": float(target.mean()),
        "policy_ess": eur.effective_sample_size,
        "logging_value_eur": float(reward_eur.mean()),
        "logging_accept_rate": float(accepted.mean()),
    }
