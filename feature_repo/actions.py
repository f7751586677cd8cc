"""Action features: the numeric attributes of each catalogue action that the NBA model scores against.

The NBA model is one binary model over (customer features x action) rows, so a new offer needs no new model, only
its attributes. Serving reads a customer's features once and tiles them against `action_features(catalogue)`;
training joins the same attributes onto logged contacts with `add_action_features`. Attributes come from the
catalogue (data, not code), so they exist in one place.
"""

from __future__ import annotations

import math

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
