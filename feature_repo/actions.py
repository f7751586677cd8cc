"""Action features: the numeric attributes of each catalogue action that the NBA model scores against.

The NBA model is one binary model over (customer features x action) rows, so a new offer needs no new model, only
its attributes. Serving reads a customer's features once and tiles them against `action_features(catalogue)`;
training joins the same attributes onto logged contacts with `add_action_features`. Attributes come from the
catalogue (data, not code), so they exist in one place.

Relevance features tie a customer's moment to one action: per (customer, action) row, the sum of the customer
features the catalogue names for the action (`Action.signals`, `Action.interest`): a linear map from the customer's
feature row, `relevance_weights`, applied by `relevance_all` (every action) and `relevance_values` (each row's own
action). Training (`add_relevance_features` on the rows' own feature columns), the ladder's candidates and the
service's scoring matrix (`serving.engine.action_rows`) use that one map, so a row gets the same relevance wherever
it is scored. An action that names no feature of a family gets 0 for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from nextbest.catalogue import PRODUCTS, Catalogue
from nextbest.errors import DataError

ACTION_KINDS: tuple[str, ...] = ("sales", "retention", "service")
ACTION_FEATURES: list[str] = [
    "action_index",
    "action_value",
    "action_log_value",
    *(f"action_kind_{k}" for k in ACTION_KINDS),
    "action_credit",
    "action_product_index",
    "action_n_channels",
]


def action_features(catalogue: Catalogue) -> pd.DataFrame:
    """One row per action (column `action_id`, in catalogue order) with the numeric `ACTION_FEATURES`."""
    rows = []
    for index, action in enumerate(catalogue.actions):
        rows.append(
            {
                "action_id": action.id,
                "action_index": index,
                "action_value": float(action.value),
                "action_log_value": math.log1p(action.value),
                **{f"action_kind_{k}": int(action.kind == k) for k in ACTION_KINDS},
                "action_credit": int(action.credit),
                # -1 for actions without a product (retention, service): a value trees can split off.
                "action_product_index": PRODUCTS.index(action.product) if action.product else -1,
                "action_n_channels": len(action.channels),
            }
        )
    frame = pd.DataFrame(rows)
    ints = [c for c in ACTION_FEATURES if c not in ("action_value", "action_log_value")]
    return frame.astype({c: "int64" for c in ints})


def add_action_features(frame: pd.DataFrame, catalogue: Catalogue) -> pd.DataFrame:
    """Join the action features onto `frame` by its `action_id` column (row order kept)."""
    if "action_id" not in frame.columns:
        raise DataError("add_action_features needs an 'action_id' column")
    unknown = sorted(set(frame["action_id"].dropna()) - set(catalogue.action_ids))
    if unknown:
        raise DataError(f"action ids not in the catalogue: {unknown[:10]}; update the catalogue or the data")
    clash = [c for c in ACTION_FEATURES if c in frame.columns]
    base = frame.drop(columns=clash)
    return base.merge(action_features(catalogue), on="action_id", how="left", validate="many_to_one")


#: relevance feature -> the `Action` field naming the customer features it sums
RELEVANCE_FAMILIES: dict[str, str] = {
    "relevance_signal_strength": "signals",
    "relevance_page_views_30d": "interest",
}
RELEVANCE_FEATURES: list[str] = list(RELEVANCE_FAMILIES)


def relevance_inputs(catalogue: Catalogue) -> list[str]:
    """The customer features any action's relevance reads, in first-named order."""
    names: dict[str, None] = {}
    for action in catalogue.actions:
        for field in RELEVANCE_FAMILIES.values():
            names.update(dict.fromkeys(getattr(action, field)))
    return list(names)


def feature_group(group: str, catalogue: Catalogue) -> tuple[str, ...]:
    """A named feature group of the feature repo (`specs.FEATURE_GROUPS`) with the relevance features that read
    any of its features: a model "without real-time context" leaves out the relevance computed from it too."""
    from feature_repo.specs import FEATURE_GROUPS

    members = FEATURE_GROUPS[group]
    reads = [
        r
        for r, field in RELEVANCE_FAMILIES.items()
        if any(n in members for a in catalogue.actions for n in getattr(a, field))
    ]
    return (*members, *reads)


def relevance_weights(catalogue: Catalogue, names: Sequence[str]) -> np.ndarray:
    """(relevance features, catalogue actions, `names`) 0/1 weights: relevance = weights @ the customer's values."""
    position = {n: j for j, n in enumerate(names)}
    weights = np.zeros((len(RELEVANCE_FAMILIES), len(catalogue.actions), len(names)), dtype=np.float64)
    for r, field in enumerate(RELEVANCE_FAMILIES.values()):
        for a, action in enumerate(catalogue.actions):
            for name in getattr(action, field):
                if name not in position:
                    raise DataError(f"action {action.id}: {field} names {name!r}, which is not a feature here")
                weights[r, a, position[name]] = 1.0
    return weights


def relevance_all(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(relevance features, rows, catalogue actions): every row's relevance for every action (`values`: rows x the
    weights' names; a missing value counts 0, as an absent signal)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    return np.stack([v @ w.T for w in weights]) if len(weights) else np.zeros((0, len(v), 0))


def relevance_values(values: np.ndarray, weights: np.ndarray, action_index: np.ndarray) -> np.ndarray:
    """(rows, relevance features): each row's relevance for its own action (`relevance_all`, one action per row)."""
    every = relevance_all(values, weights)
    return every[:, np.arange(every.shape[1]), np.asarray(action_index, dtype=np.intp)].T


def add_relevance_features(frame: pd.DataFrame, catalogue: Catalogue) -> pd.DataFrame:
    """`RELEVANCE_FEATURES` of each row for its `action_id`, from the row's own feature columns (row order kept)."""
    if "action_id" not in frame.columns:
        raise DataError("add_relevance_features needs an 'action_id' column")
    names = relevance_inputs(catalogue)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise DataError(f"relevance features need column(s) {missing[:10]} (named by the catalogue's actions)")
    index = {a: i for i, a in enumerate(catalogue.action_ids)}
    unknown = sorted(set(frame["action_id"]) - set(index), key=str)
    if unknown:
        raise DataError(f"action ids not in the catalogue: {unknown[:10]}; update the catalogue or the data")
    action_index = frame["action_id"].map(index).to_numpy(dtype=np.intp)
    values = frame[names].to_numpy(dtype=np.float64, na_value=np.nan) if names else np.zeros((len(frame), 0))
    block = relevance_values(values, relevance_weights(catalogue, names), action_index)
    out = frame.drop(columns=[c for c in RELEVANCE_FEATURES if c in frame.columns])
    for r, name in enumerate(RELEVANCE_FEATURES):
        out[name] = block[:, r]
    return out
