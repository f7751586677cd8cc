"""(Customer, action) relevance features: declared in the catalogue, one linear map for training and serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_repo.actions import (
    RELEVANCE_FEATURES,
    add_relevance_features,
    feature_group,
    relevance_inputs,
)
from feature_repo.specs import MOMENT_FIELDS
from nextbest.catalogue import Catalogue, load_catalogue
from nextbest.errors import DataError
from serving.engine import action_rows, build_layout, feature_matrix
from training.evaluate import context_features


def _rows(catalogue: Catalogue, seed: int = 3) -> pd.DataFrame:
    """One row per catalogue action, random values for every relevance input (some missing)."""
    rng = np.random.default_rng(seed)
    names = relevance_inputs(catalogue)
    values = rng.uniform(0, 3, size=(len(catalogue.actions), len(names)))
    values[rng.uniform(size=values.shape) < 0.2] = np.nan
    frame = pd.DataFrame(values, columns=names)
    frame.insert(0, "action_id", list(catalogue.action_ids))
    return frame


def test_each_row_sums_the_features_its_action_names_and_missing_counts_zero() -> None:
    catalogue = load_catalogue()
    frame = _rows(catalogue)
    out = add_relevance_features(frame, catalogue)
    assert list(out["action_id"]) == list(frame["action_id"])
    for _, row in out.iterrows():
        action = catalogue.action(row["action_id"])
        assert row["relevance_signal_strength"] == pytest.approx(np.nansum([row[n] for n in action.signals]))
        assert row["relevance_page_views_30d"] == pytest.approx(np.nansum([row[n] for n in action.interest]))
    mortgage = out[out["action_id"] == "mortgage"].iloc[0]
    assert "property_search_strength" in catalogue.action("mortgage").signals
    assert mortgage["relevance_signal_strength"] > 0 or np.isnan(mortgage["property_search_strength"])


def test_a_missing_input_column_or_an_unknown_action_is_a_clear_error() -> None:
    catalogue = load_catalogue()
    frame = _rows(catalogue)
    with pytest.raises(DataError, match="property_search_strength"):
        add_relevance_features(frame.drop(columns=["property_search_strength"]), catalogue)
    bad = frame.copy()
    bad.loc[0, "action_id"] = "free_lunch"
    with pytest.raises(DataError, match="free_lunch"):
        add_relevance_features(bad, catalogue)


def test_the_service_matrix_gets_the_relevance_training_gets_for_every_action() -> None:
    catalogue = load_catalogue()
    from nextbest.features import action_features

    customer_names = ["age", *relevance_inputs(catalogue)]
    feature_names = [*customer_names, "action_value", *RELEVANCE_FEATURES]
    layout = build_layout(feature_names, catalogue, action_features(catalogue))
    assert set(layout.relevance_names) == set(relevance_inputs(catalogue))
    row = _rows(catalogue).iloc[5].drop("action_id").to_dict()
    row["age"] = 40
    features = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
    index = list(range(len(catalogue.actions)))
    customer = feature_matrix([features], layout.customer_names)[0]
    X = action_rows(len(feature_names), layout, customer, index, feature_matrix([features], layout.relevance_names)[0])
    training = add_relevance_features(pd.DataFrame([{**row, "action_id": a} for a in catalogue.action_ids]), catalogue)
    for name in RELEVANCE_FEATURES:
        served = X[:, feature_names.index(name)]
        np.testing.assert_allclose(served, training[name].to_numpy(dtype=np.float32), rtol=1e-6)
    assert len(set(X[:, feature_names.index("relevance_signal_strength")].round(4))) > 3  # varies by action


def test_a_catalogue_naming_a_feature_the_rows_lack_fails_at_layout() -> None:
    catalogue = load_catalogue()
    from nextbest.features import action_features

    actions = [
        a.model_copy(update={"signals": ("no_such_feature",)}) if a.id == "mortgage" else a for a in catalogue.actions
    ]
    odd = catalogue.model_copy(update={"actions": tuple(actions)})
    layout = build_layout(["age", *RELEVANCE_FEATURES], odd, action_features(odd))
    assert "no_such_feature" in layout.relevance_names  # the served read is checked against these at load
    with pytest.raises(DataError, match="no_such_feature"):
        add_relevance_features(_rows(catalogue).assign(action_id="mortgage"), odd)


def test_a_model_without_real_time_context_leaves_out_the_relevance_read_from_it() -> None:
    catalogue = load_catalogue()
    moment = feature_group("moment", catalogue)
    assert "relevance_signal_strength" in moment  # reads decayed signal strengths
    assert "relevance_page_views_30d" not in moment  # reads the daily snapshot only
    names = ["age", "property_search_strength", *RELEVANCE_FEATURES]
    assert context_features(names) == ["property_search_strength", "relevance_signal_strength"]
    assert set(MOMENT_FIELDS) <= set(moment)


@pytest.mark.parametrize("names", [["a", "b", "c"], ["b"], []], ids=["three", "one", "none"])
def test_a_feature_matrix_is_its_rows_one_at_a_time(names: list[str]) -> None:
    """The batch conversion (all names present, some missing, text among the values) equals `feature_row` per row."""
    from serving.engine import feature_row

    plain = [{"a": 1.5, "b": None, "c": 3, "z": "x"}, {"a": np.float32(0.25), "b": True, "c": np.int64(2**40)}]
    missing = [*plain, {"a": 2.0}]
    text = [*plain, {"a": "7", "b": "text", "c": 1.0}]
    for rows in (plain, missing, text):
        want = np.stack([feature_row(r, names) for r in rows])
        got = feature_matrix(rows, names)
        assert got.shape == (len(rows), len(names)) and got.dtype == np.float32
        assert np.array_equal(got, want, equal_nan=True)
