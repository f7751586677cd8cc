"""Berka (real Czech bank data) onboarded by configs/berka.yaml: tables load as documented, features are
point-in-time (a planted leak is caught), labels are uncensored first uptakes, and the default model trains,
registers and reaches a sane cross-validated AUC.

Data: `NEXTBEST_BERKA_DIR`, default `../shared/data/berka` relative to the repo root. Tests skip only if absent.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from nextbest.onboarding import features as onboarding_features
from nextbest.onboarding.config import OnboardingConfig, load_config
from nextbest.onboarding.datasets import build_training_set, label_frame
from nextbest.onboarding.features import build_spine, compute_view
from nextbest.onboarding.tables import connect
from nextbest.settings import REPO_ROOT, Settings

BERKA_DIR = Path(os.environ.get("NEXTBEST_BERKA_DIR") or REPO_ROOT.parent / "shared/data/berka")
CONFIG = REPO_ROOT / "configs/berka.yaml"

pytestmark = pytest.mark.skipif(
    not (BERKA_DIR / "account.csv").is_file() and os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
    reason=f"Berka data not found at {BERKA_DIR} (set NEXTBEST_BERKA_DIR to the folder of account.csv)",
)


@pytest.fixture(scope="module")
def config() -> OnboardingConfig:
    os.environ.setdefault("NEXTBEST_BERKA_DIR", str(BERKA_DIR))
    return load_config(CONFIG)


@pytest.fixture(scope="module")
def con(config: OnboardingConfig) -> duckdb.DuckDBPyConnection:
    connection = connect(config)
    for entity in config.entities:
        build_spine(connection, config, entity)
    return connection


def _views_of(config: OnboardingConfig, entity: str) -> list:
    return [v for v in config.feature_views if v.entity == entity]


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])  # type: ignore[index]


def test_berka_tables_load_typed_with_the_documented_row_counts(
    config: OnboardingConfig, con: duckdb.DuckDBPyConnection
) -> None:
    assert config.data_dir == BERKA_DIR.resolve()
    counts = {t: _count(con, t) for t in ("accounts", "clients", "loans", "cards", "orders", "transactions")}
    assert counts == {
        "accounts": 4500,
        "clients": 5369,
        "loans": 682,
        "cards": 892,
        "orders": 6471,
        "transactions": 30200,
    }
    # Women's birth numbers carry month + 50: parsed into a real date and a flag, never a month > 12.
    owners = con.execute("SELECT min(month(birth_date)), max(month(birth_date)), avg(female) FROM owners").fetchone()
    assert owners[0] >= 1 and owners[1] <= 12 and 0.4 < owners[2] < 0.6  # type: ignore[index]


def test_loan_history_equals_a_brute_force_recompute_strictly_before_the_loan_date(
    config: OnboardingConfig, con: duckdb.DuckDBPyConnection
) -> None:
    history = compute_view(con, config, config.view("loan_history")).set_index("loan_id")
    loans = pd.read_csv(BERKA_DIR / "loan.csv", sep=";")
    trans = pd.read_csv(BERKA_DIR / "feup_ac_subset/trans_comp.csv", sep=";")
    loans["loan_date"] = pd.to_datetime(loans["date"].astype(str), format="%y%m%d")
    trans["day"] = pd.to_datetime(trans["date"].astype(str), format="%y%m%d")
    joined = loans[["loan_id", "account_id", "loan_date"]].merge(trans, on="account_id")
    before = joined[joined.day < joined.loan_date].sort_values(["loan_id", "day", "trans_id"])
    expected = before.groupby("loan_id").agg(
        n=("trans_id", "size"),
        credit=("amount", lambda s: s[before.loc[s.index, "type"] == "credit"].sum()),
        low=("balance", "min"),
    )
    expected = expected.reindex(loans.loan_id)
    got = history.loc[loans.loan_id]
    assert (got["trans_all"].to_numpy() == expected["n"].fillna(0).to_numpy()).all()
    np.testing.assert_allclose(got["amount_credit_all"], expected["credit"].fillna(0), rtol=1e-9)
    np.testing.assert_allclose(got["balance_min_all"], expected["low"], rtol=1e-9)  # NaN where no history
    assert (got["trans_all"] > 0).sum() == 354  # the 1997-98 loans, exactly those with history


def _future_rows_change_loan_features(config: OnboardingConfig) -> set[str]:
    """Plant transactions ON and after every loan date; return the loan features that changed (should be none)."""
    con = connect(config)
    build_spine(con, config, "loan")
    views = _views_of(config, "loan")
    before = {v.name: compute_view(con, config, v) for v in views}
    con.execute(
        """
        INSERT INTO transactions (trans_id, account_id, date, type, operation, amount, balance, k_symbol)
        SELECT 90000000 + row_number() OVER (), l.account_id, l.date + to_days(d.offset_days), 'credit',
               'credit in cash', 1e6, 1e7, 'household'
        FROM loans l CROSS JOIN (VALUES (0), (1), (40)) d(offset_days)
        """
    )
    changed: set[str] = set()
    for view in views:
        after = compute_view(con, config, view)
        for column in after.columns:
            if not after[column].equals(before[view.name][column]):
                changed.add(column)
    return changed


def test_transactions_on_or_after_the_loan_date_never_change_a_loan_feature(config: OnboardingConfig) -> None:
    assert _future_rows_change_loan_features(config) == set()


def test_a_planted_leak_in_the_cutoff_is_caught(config: OnboardingConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    # The builder's one point-in-time rule, loosened to "on or before": the loan day's own rows leak in.
    monkeypatch.setattr(onboarding_features, "_before", lambda source, snapshot: f"{source} <= {snapshot}")
    changed = _future_rows_change_loan_features(config)
    assert {"trans_all", "trans_30d", "amount_credit_all", "balance_last_all"} <= changed


def test_a_card_issued_later_changes_only_snapshots_after_it(config: OnboardingConfig) -> None:
    con = connect(config)
    build_spine(con, config, "account")
    view = config.view("account_products")
    before = compute_view(con, config, view)
    issued = pd.Timestamp("1997-01-01", tz="UTC")
    con.execute(
        "INSERT INTO cards_by_account SELECT account_id, 99000000 + account_id, 'classic', TIMESTAMP '1997-01-01' "
        "FROM account_profile"
    )
    after = compute_view(con, config, view)
    early = (after.event_timestamp <= issued).to_numpy()
    pd.testing.assert_frame_equal(after[early], before[early])  # the snapshot at the issue time excludes it
    later_gain = after.loc[~early, "cards_all"].to_numpy() - before.loc[~early, "cards_all"].to_numpy()
    assert (later_gain == 1).all()  # positive control: the planted card is seen by every later snapshot


def test_propensity_labels_are_uncensored_first_uptakes_within_the_horizon(
    config: OnboardingConfig, con: duckdb.DuckDBPyConnection
) -> None:
    model = config.model("berka_propensity")
    labels = label_frame(con, config, model)
    horizon = pd.Timedelta(days=model.label.horizon_days)  # type: ignore[union-attr]
    end = pd.Timestamp(config.data_end, tz="UTC")
    assert (labels.event_timestamp + horizon <= end).all()  # no censored label window

    cards = con.execute("SELECT account_id, issued AS ts FROM cards_by_account").df()
    loans = con.execute("SELECT account_id, granted AS ts FROM loans").df()
    first = pd.concat([cards, loans]).groupby("account_id").ts.min().dt.tz_localize("UTC")
    uptake = labels.account_id.map(first)
    # First uptake only: nobody in the frame had a card or loan before the snapshot.
    assert not (uptake < labels.event_timestamp).any()
    expected = (uptake >= labels.event_timestamp) & (uptake < labels.event_timestamp + horizon)
    assert (labels.label.to_numpy() == expected.to_numpy().astype(int)).all()
    assert 0.01 < labels.label.mean() < 0.06


def test_propensity_features_never_read_the_loan_accounts_transactions(config: OnboardingConfig) -> None:
    # Transactions exist only for accounts that later got a 1997-98 loan: their presence alone leaks the label.
    model = config.model("berka_propensity")
    assert all(config.view(v).source != "transactions" for v in model.feature_views)
    assert all(config.view(v).source not in ("loans", "loans_raw") for v in model.feature_views)


@pytest.mark.slow
def test_default_model_trains_registers_serves_and_has_a_sane_cross_validated_auc(
    config: OnboardingConfig, tmp_path: Path
) -> None:
    from nextbest.features.project import feature_project
    from nextbest.jobs import onboard as job
    from nextbest.models.artefact import load_model
    from nextbest.models.registry import mlflow_client
    from nextbest.onboarding.scoring import ProjectScorer
    from nextbest.project import load_project

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    settings = Settings(home=tmp_path / "home")
    features = feature_project(load_project(CONFIG), settings)
    features.build()
    features.apply()
    stats = features.materialize()
    assert stats.method == "fast" and stats.views["loan_history"] == 682 and stats.views["account_profile"] == 4500

    # Feast's point-in-time join returns exactly the builder's row at each loan's grant date.
    training_set = build_training_set(config, settings, "berka_default")
    con = connect(config)
    build_spine(con, config, "loan")
    history = compute_view(con, config, config.view("loan_history"))
    expected = training_set.frame[["loan_id", "event_timestamp"]].merge(history, on=["loan_id", "event_timestamp"])
    pd.testing.assert_frame_equal(
        training_set.frame[expected.columns].reset_index(drop=True), expected, check_dtype=False
    )

    result = job.train(config, settings, "berka_default", trials=3)
    assert result.rows == 354 and result.positives == 30
    assert result.train.version == "1" and result.train.promoted
    tuned = next(cv for cv in result.validation if cv.recipe == "tuned").summary()
    plain = next(cv for cv in result.validation if cv.recipe == "plain_xgboost").summary()
    assert tuned["n_folds"] == 15
    assert 0.75 < tuned["roc_auc_mean"] < 0.98 and tuned["roc_auc_std"] < 0.15
    assert 0.75 < plain["roc_auc_mean"] < 0.98
    logged = mlflow_client(settings).get_run(result.train.run_id).data.metrics
    assert logged["cv_tuned_roc_auc_mean"] == pytest.approx(tuned["roc_auc_mean"])

    # The champion scores loans from the online store through the model's feature service, with reasons.
    scorer = ProjectScorer(config, settings, "berka_default")
    scores = scorer.score([5314, 7308, 123456789])
    assert [s.known for s in scores] == [True, True, False]
    assert all(0.0 < s.probability < 1.0 for s in scores)
    assert all(r in scorer.model.feature_names for r in scores[0].reasons)
    assert load_model("berka_default", settings=settings).version == "1"
