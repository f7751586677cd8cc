"""Feature repo: point-in-time correctness, materialization, push, online/offline agreement, action features.

One small seeded world (tests/features_fixtures.py) is built, applied and materialized once per module in a tmp
home; tests that write to the online store work on a copy of that home.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import feature_repo.pipeline as pipeline
from feature_repo.context import context_features
from feature_repo.specs import (
    CONTEXT_FIELDS,
    PAGE_HALF_LIFE_HOURS,
    REALTIME_FIELDS,
    SIGNAL_HALF_LIFE_HOURS,
    SNAPSHOT_VIEWS,
)
from nextbest.catalogue import load_catalogue
from nextbest.errors import DataError, NotReadyError
from nextbest.features import (
    ACTION_FEATURES,
    CHURN_SERVICE,
    NBA_SERVICE,
    REQUEST_FIELDS,
    action_features,
    add_action_features,
    features_of,
    get_store,
    online_features,
    online_rows,
    push_event,
    request_context,
    request_frame,
    service_features,
)
from nextbest.settings import FEATURE_REPO_DIR, Settings
from tests.features_bruteforce import (
    alive_at,
    expected_realtime,
    expected_snapshot,
    load_sources,
    mismatches,
)
from tests.features_fixtures import write_sources

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning")


def _settings(home: Path) -> Settings:
    return Settings(home=home)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A 40-customer, 40-day world with feature tables built and the repo applied (no online data yet)."""
    settings = _settings(tmp_path_factory.mktemp("features_home"))
    write_sources(settings.world_dir, customers=40, days=40, seed=3)
    features = features_of(settings)
    features.build()
    features.apply()
    return settings


@pytest.fixture(scope="module")
def sources(world: Settings) -> dict[str, pd.DataFrame]:
    return load_sources(world.sources_dir)


@pytest.fixture(scope="module")
def online(world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the world's home with everything fast-materialized."""
    home = tmp_path_factory.mktemp("features_online")
    shutil.copytree(world.home, home, dirs_exist_ok=True)
    settings = _settings(home)
    # The copied registry still points at the original offline tables, which nobody modifies.
    features_of(settings).materialize(method="fast")
    return settings


def _copy_home(settings: Settings, dest: Path) -> Settings:
    shutil.copytree(settings.home, dest, dirs_exist_ok=True)
    return _settings(dest)


# ---- point-in-time correctness ----


def _snapshot_sample(table: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    return table.sample(n=min(n, len(table)), random_state=seed)


def _pipeline_mismatches(tables: dict[str, Path], src: dict[str, pd.DataFrame], n: int) -> list[str]:
    merged = pd.read_parquet(tables[SNAPSHOT_VIEWS[0]])
    for view in SNAPSHOT_VIEWS[1:]:
        merged = merged.merge(pd.read_parquet(tables[view]), on=["customer_id", "event_timestamp"], how="outer")
    bad: list[str] = []
    for _, row in _snapshot_sample(merged, n).iterrows():
        c = row["event_timestamp"]
        bad += mismatches(row, expected_snapshot(src, int(row["customer_id"]), c), f"customer {row.customer_id} @ {c}")
    return bad


def test_snapshot_features_equal_a_brute_force_recompute_from_rows_strictly_before_the_snapshot(
    world: Settings, sources: dict[str, pd.DataFrame]
) -> None:
    tables = {v: world.features_dir / "offline" / f"{v}.parquet" for v in SNAPSHOT_VIEWS}
    bad = _pipeline_mismatches(tables, sources, n=60)
    assert not bad, "\n".join(bad[:20])


CHURN_DRIVERS = (
    "days_since_complaint",
    "days_since_competitor_transfer",
    "retention_acceptances_90d",
    "service_acceptances_30d",
    "unwanted_contacts_30d",
)


def test_churn_driver_features_equal_the_brute_force_recompute_where_they_are_set(
    world: Settings, sources: dict[str, pd.DataFrame]
) -> None:
    # Rows where each churn driver has a value (a complaint, a competitor transfer, an accepted retention or service
    # action, an unwanted outbound contact before the snapshot), recomputed from the rows strictly before it.
    merged = pd.read_parquet(world.features_dir / "offline" / f"{SNAPSHOT_VIEWS[0]}.parquet")
    for view in SNAPSHOT_VIEWS[1:]:
        merged = merged.merge(pd.read_parquet(world.features_dir / "offline" / f"{view}.parquet"))
    bad: list[str] = []
    for name in CHURN_DRIVERS:
        values = merged[name]
        is_set = values.notna() & (values > 0)
        assert is_set.sum() >= 5, f"the test world never sets {name}"
        for _, row in _snapshot_sample(merged[is_set], 8).iterrows():
            c = row["event_timestamp"]
            want = expected_snapshot(sources, int(row["customer_id"]), c)
            bad += mismatches(row, {n: want[n] for n in CHURN_DRIVERS}, f"customer {row.customer_id} @ {c}")
    assert not bad, "\n".join(bad[:20])


def test_the_brute_force_check_catches_a_leak_planted_in_the_window_frames(
    world: Settings, sources: dict[str, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plant the classic leak: windows that include the snapshot's own day, i.e. events after the snapshot time.
    leaky = {k: v.replace("AND 1 PRECEDING", "AND CURRENT ROW") for k, v in pipeline._WINDOWS.items()}
    monkeypatch.setattr(pipeline, "_WINDOWS", leaky)
    tables = pipeline.build_feature_tables(world.sources_dir, tmp_path / "leaky")
    bad = _pipeline_mismatches(tables, sources, n=60)
    assert len(bad) > 20
    assert any("logins_7d" in b or "txn_count_30d" in b for b in bad)


def test_the_brute_force_check_catches_a_leak_planted_in_the_as_of_joins(
    world: Settings, sources: dict[str, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plant a subtler leak: the balance statement of the snapshot's own day (as_of 23:59:59 after the snapshot).
    original = pipeline._build_activity

    def leaky_activity(con):  # type: ignore[no-untyped-def]
        con.execute(
            "CREATE OR REPLACE TEMP VIEW src_balances AS "
            "SELECT * REPLACE (as_of - INTERVAL 1 DAY AS as_of) FROM read_parquet("
            f"'{world.sources_dir / 'balances.parquet'}')"
        )
        return original(con)

    # The build dispatches through its table of view builders (also what a Dask worker runs per chunk).
    monkeypatch.setitem(pipeline._BUILDERS, pipeline.ACTIVITY_VIEW, leaky_activity)
    tables = pipeline.build_feature_tables(world.sources_dir, tmp_path / "leaky")
    bad = _pipeline_mismatches(tables, sources, n=60)
    assert any("current_balance" in b for b in bad)


def test_training_rows_from_feast_never_see_source_rows_after_their_timestamp(
    world: Settings, sources: dict[str, pd.DataFrame]
) -> None:
    store = get_store(world)
    contacts = sources["contacts"].sample(n=60, random_state=1)
    # Decision times at odd minutes plus exact midnights, the boundary where "<" vs "<=" matters.
    midnights = contacts.assign(ts=contacts["ts"].dt.floor("D"))
    decisions = pd.concat([contacts, midnights], ignore_index=True)
    entity = request_frame(decisions)
    frame = store.get_historical_features(entity_df=entity, features=store.get_feature_service(NBA_SERVICE)).to_df()
    assert len(frame) == len(entity)
    checked = 0
    bad: list[str] = []
    for _, row in frame.iterrows():
        t = row["event_timestamp"]
        snapshot = t.floor("D")
        customer = int(row["customer_id"])
        where = f"customer {customer} @ {t}"
        if alive_at(sources, customer, snapshot):
            bad += mismatches(row, expected_snapshot(sources, customer, snapshot), where)
            checked += 1
        realtime = expected_realtime(sources, customer, t)
        bad += mismatches(row, {k: v for k, v in realtime.items() if k in CONTEXT_FIELDS}, where)
    assert checked > 50
    assert not bad, "\n".join(bad[:20])


def test_future_source_rows_do_not_change_features_at_earlier_times(world: Settings, tmp_path: Path) -> None:
    src_dir = tmp_path / "sources"
    shutil.copytree(world.sources_dir, src_dir)
    before = pipeline.build_feature_tables(src_dir, tmp_path / "before")
    cutoff = pd.Timestamp("2026-01-20", tz="UTC")
    # Append events from the cutoff on for every customer: transactions, signals, page views, contacts.
    tx = pd.read_parquet(src_dir / "transactions")
    future = tx.sample(n=200, random_state=0, replace=True).assign(ts=cutoff + pd.Timedelta(minutes=1))
    future.to_parquet(src_dir / "transactions" / "part-99999.parquet")
    for name, col in (("context_signals", "ts"), ("digital_events", "ts"), ("contacts", "ts")):
        frame = pd.read_parquet(src_dir / f"{name}.parquet")
        extra = frame.sample(n=100, random_state=0, replace=True).assign(**{col: cutoff})
        if name == "contacts":
            extra = extra.assign(outcome_ts=cutoff + pd.Timedelta(hours=1))
        pd.concat([frame, extra]).to_parquet(src_dir / f"{name}.parquet")
    after = pipeline.build_feature_tables(src_dir, tmp_path / "after")
    for view in before:
        old = pd.read_parquet(before[view])
        new = pd.read_parquet(after[view])
        # Snapshot rows stamped at the cutoff see only rows < cutoff; real-time rows only rows <= their time.
        visible = (
            (lambda f: f["event_timestamp"] < cutoff)
            if view == "realtime_state"
            else (lambda f: f["event_timestamp"] <= cutoff)
        )
        keep_old, keep_new = old[visible(old)], new[visible(new)]
        pd.testing.assert_frame_equal(keep_old.reset_index(drop=True), keep_new.reset_index(drop=True))
        assert len(new) >= len(old)


def test_building_in_customer_chunks_writes_the_same_tables_as_one_chunk(world: Settings, tmp_path: Path) -> None:
    whole = {v: world.features_dir / "offline" / f"{v}.parquet" for v in (*SNAPSHOT_VIEWS, "realtime_state")}
    chunked = pipeline.build_feature_tables(world.sources_dir, tmp_path / "chunked", chunk_customers=7)
    for view, path in whole.items():
        pd.testing.assert_frame_equal(pd.read_parquet(chunked[view]), pd.read_parquet(path))


# ---- materialization and online reads ----


def _online_rows(db: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            t: sorted(
                con.execute(f'SELECT entity_key, feature_name, value, value_text, event_ts FROM "{t}"').fetchall()
            )
            for t in tables
        }
    finally:
        con.close()


def test_fast_materialize_writes_exactly_the_rows_feast_materialize_writes(world: Settings, tmp_path: Path) -> None:
    feast_home = _copy_home(world, tmp_path / "feast")
    fast_home = _copy_home(world, tmp_path / "fast")
    feast_stats = features_of(feast_home).materialize(method="feast")
    fast_stats = features_of(fast_home).materialize(method="fast")
    assert fast_stats.values == feast_stats.values > 0
    assert fast_stats.views == feast_stats.views
    feast_rows = _online_rows(feast_home.features_dir / "online_store.db")
    fast_rows = _online_rows(fast_home.features_dir / "online_store.db")
    assert sum(len(v) for v in fast_rows.values()) == fast_stats.values
    assert fast_rows == feast_rows
    customers = list(range(1, 41))
    for service in (CHURN_SERVICE, NBA_SERVICE):
        at = request_context("app", at=datetime(2026, 2, 10, 12, tzinfo=UTC))
        a = online_features(get_store(feast_home), customers, service=service, request=at)
        b = online_features(get_store(fast_home), customers, service=service, request=at)
        pd.testing.assert_frame_equal(a, b)


def _stray_rows(home: Settings) -> None:
    """Rows Feast's upsert leaves alone when the views are materialized again, and one it overwrites."""
    db = sqlite3.connect(home.features_dir / "online_store.db")
    try:
        table = next(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE name LIKE '%customer_profile'"))
        some = db.execute(f'SELECT * FROM "{table}" ORDER BY entity_key, feature_name LIMIT 1').fetchone()
        columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
        row = dict(zip(columns, some, strict=True))
        with db:
            marks = ", ".join("?" * len(columns))
            gone_entity = {**row, "entity_key": row["entity_key"][:-8] + (99_999).to_bytes(8, "little")}
            stale_feature = {**row, "feature_name": "a_feature_no_longer_in_the_view"}
            for extra in (gone_entity, stale_feature):
                db.execute(f'INSERT INTO "{table}" VALUES ({marks})', [extra[c] for c in columns])
            db.execute(f"UPDATE \"{table}\" SET value = x'', value_text = NULL, event_ts = 0 WHERE rowid = 7")
    finally:
        db.close()


def test_fast_rewrite_of_a_full_store_keeps_the_rows_feasts_upsert_keeps(world: Settings, tmp_path: Path) -> None:
    """A rewrite of a full store drops and refills each table: rows the new data does not cover are carried over."""
    homes = {m: _copy_home(world, tmp_path / m) for m in ("feast", "fast")}
    for home in homes.values():
        features_of(home).materialize(method="feast")
        _stray_rows(home)
    before = _online_rows(homes["fast"].features_dir / "online_store.db")
    for method, home in homes.items():
        features_of(home).materialize(method=method)  # type: ignore[arg-type]
    feast_rows = _online_rows(homes["feast"].features_dir / "online_store.db")
    fast_rows = _online_rows(homes["fast"].features_dir / "online_store.db")
    assert fast_rows == feast_rows != before
    assert sum(len(v) for v in fast_rows.values()) == sum(len(v) for v in before.values())
    db = sqlite3.connect(homes["fast"].features_dir / "online_store.db")
    try:  # Feast's own schema and index survive the swap
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        assert any(n.endswith("customer_profile_ek") for n in names)
    finally:
        db.close()


def test_fast_materialize_records_the_interval_so_incremental_materialization_continues(online: Settings) -> None:
    store = get_store(online)
    fv = store.get_feature_view("customer_profile")
    assert fv.materialization_intervals, "the fast path must record what it materialized"
    assert fv.most_recent_end_time is not None


def test_online_features_equal_offline_training_features_at_the_same_instant(online: Settings) -> None:
    store = get_store(online)
    last = pd.read_parquet(online.features_dir / "offline" / "customer_profile.parquet")["event_timestamp"].max()
    customers = [1, 5, 9, 17, 23, 31]
    at = last.to_pydatetime()
    context = request_context("push", at=at, location_type="airport")
    offline = store.get_historical_features(
        entity_df=pd.DataFrame([{"customer_id": c, "event_timestamp": last, **context} for c in customers]),
        features=store.get_feature_service(NBA_SERVICE),
    ).to_df()
    offline = offline.set_index("customer_id").loc[customers, service_features(NBA_SERVICE)]
    live = online_features(store, customers, service=NBA_SERVICE, request=context).set_index("customer_id")
    live = live[service_features(NBA_SERVICE)]
    np.testing.assert_allclose(
        live.to_numpy(dtype="float64"), offline.to_numpy(dtype="float64"), rtol=1e-9, atol=1e-9, equal_nan=True
    )


def test_online_rows_hot_path_returns_the_feature_service_values(online: Settings) -> None:
    store = get_store(online)
    customers = [2, 3, 11, 12, 999_999]
    for service in (CHURN_SERVICE, NBA_SERVICE):
        for context in (request_context("app", at=datetime(2026, 2, 3, 8, tzinfo=UTC), location_type="airport"),
                        request_context("sms", at=datetime(2026, 1, 20, 22, tzinfo=UTC))):  # fmt: skip
            via_service = online_features(store, customers, service=service, request=context)
            rows = pd.DataFrame(online_rows(store, customers, service=service, request=context))
            assert list(rows.columns) == list(via_service.columns)
            np.testing.assert_allclose(
                rows.to_numpy(dtype="float64"), via_service.to_numpy(dtype="float64"), rtol=1e-12, equal_nan=True
            )


def test_pushing_an_airport_checkin_makes_the_signal_fresh_and_strong(online: Settings, tmp_path: Path) -> None:
    settings = _copy_home(online, tmp_path / "push")
    store = get_store(settings)
    now = datetime.now(UTC)
    before = online_features(store, [7], request=request_context("app", at=now))
    assert before["hours_since_airport_checkin"].iloc[0] > 24
    row = push_event(store, {"customer_id": 7, "ts": now - timedelta(minutes=6), "signal": "airport_checkin"})
    assert row is not None and row["last_airport_checkin_ts"] == pytest.approx((now - timedelta(minutes=6)).timestamp())
    after = online_features(store, [7], request=request_context("app", at=now, location_type="airport"))
    assert after["hours_since_airport_checkin"].iloc[0] == pytest.approx(0.1, abs=1e-3)
    assert after["airport_checkin_strength"].iloc[0] > 0.99
    assert after["location_airport"].iloc[0] == 1
    # Other customers and the other signals of this one are untouched.
    assert before["hours_since_complaint"].iloc[0] == after["hours_since_complaint"].iloc[0]
    other = online_features(store, [8], request=request_context("app", at=now))
    assert other["hours_since_airport_checkin"].iloc[0] > 24
    # A late, older event never moves the state backwards; an event with no real-time meaning is ignored.
    push_event(store, {"customer_id": 7, "ts": now - timedelta(days=3), "signal": "airport_checkin"})
    push_event(store, {"customer_id": 7, "ts": now, "page": "mortgage_calculator", "event_type": "page_view"})
    assert push_event(store, {"customer_id": 7, "ts": now, "event_type": "login", "page": None}) is None
    final = online_features(store, [7], request=request_context("app", at=now))
    assert final["hours_since_airport_checkin"].iloc[0] == pytest.approx(0.1, abs=1e-3)
    assert final["mortgage_calculator_intent"].iloc[0] == pytest.approx(1.0)


def test_push_event_for_an_unknown_customer_creates_its_state(online: Settings, tmp_path: Path) -> None:
    settings = _copy_home(online, tmp_path / "push_new")
    store = get_store(settings)
    now = datetime.now(UTC)
    push_event(store, {"customer_id": 999_999, "ts": now, "signal": "car_dealership_visit"})
    row = online_features(store, [999_999], request=request_context("app", at=now))
    assert row["hours_since_car_dealership_visit"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert pd.isna(row["income_monthly"].iloc[0])


# ---- pure functions: real-time fold, request context, action features ----


def test_a_late_event_never_moves_real_time_state_backwards() -> None:
    t0 = pd.Timestamp("2026-03-01 10:00", tz="UTC")
    previous = pd.DataFrame(
        [
            {
                "customer_id": 1,
                "event_timestamp": t0,
                **{c: np.nan for c in REALTIME_FIELDS},
                "last_airport_checkin_ts": t0.timestamp(),
            }
        ]
    )
    late = pd.DataFrame(
        [
            {"customer_id": 1, "ts": t0 - pd.Timedelta(days=2), "column": "last_airport_checkin_ts"},
            {"customer_id": 1, "ts": t0 - pd.Timedelta(days=1), "column": "last_complaint_ts"},
        ]
    )
    state = pipeline.fold_realtime_state(late, previous=previous)
    latest = state.iloc[-1]
    assert latest["event_timestamp"] == t0
    assert latest["last_airport_checkin_ts"] == t0.timestamp()
    assert latest["last_complaint_ts"] == (t0 - pd.Timedelta(days=1)).timestamp()


def test_signal_strength_halves_after_one_half_life_and_is_zero_when_never_seen() -> None:
    now = 1_780_000_000.0
    half = SIGNAL_HALF_LIFE_HOURS["airport_checkin"]
    page_half = PAGE_HALF_LIFE_HOURS["mortgage_calculator"]
    out = context_features(
        {
            "request_ts": [now, now],
            "channel": ["app", "sms"],
            "hour_of_day": [10, 22],
            "location_type": ["airport", None],
            "last_airport_checkin_ts": [now - half * 3600, None],
            "last_mortgage_calculator_view_ts": [now - page_half * 3600, None],
        }
    )
    assert out["airport_checkin_strength"] == pytest.approx([0.5, 0.0])
    assert out["hours_since_airport_checkin"][0] == pytest.approx(half)
    assert out["hours_since_airport_checkin"][1] == 24 * 365
    assert out["mortgage_calculator_intent"] == pytest.approx([0.5, 0.0])
    assert out["channel_app"] == [1, 0] and out["channel_sms"] == [0, 1]
    assert out["location_airport"] == [1, 0]
    assert out["business_hours"] == [1, 0]
    assert set(out) == set(CONTEXT_FIELDS)


def test_action_features_have_one_row_per_action_and_exactly_one_kind() -> None:
    catalogue = load_catalogue()
    frame = action_features(catalogue)
    assert list(frame["action_id"]) == list(catalogue.action_ids)
    assert list(frame.columns) == ["action_id", *ACTION_FEATURES]
    kinds = frame[[c for c in ACTION_FEATURES if c.startswith("action_kind_")]].sum(axis=1)
    assert (kinds == 1).all()
    assert frame.loc[frame["action_id"] == "mortgage", "action_credit"].item() == 1
    assert all(frame[c].dtype.kind in "if" for c in ACTION_FEATURES)


def test_add_action_features_keeps_row_order_and_rejects_unknown_actions() -> None:
    catalogue = load_catalogue()
    logged = pd.DataFrame({"contact_id": [3, 1, 2], "action_id": ["mortgage", "travel_card", "mortgage"]})
    joined = add_action_features(logged, catalogue)
    assert list(joined["contact_id"]) == [3, 1, 2]
    assert joined.loc[0, "action_value"] == catalogue.action("mortgage").value
    with pytest.raises(DataError, match="not in the catalogue"):
        add_action_features(pd.DataFrame({"action_id": ["free_lunch"]}), catalogue)


def test_feature_services_list_the_model_inputs() -> None:
    churn, nba = service_features(CHURN_SERVICE), service_features(NBA_SERVICE)
    assert 50 <= len(churn) <= 90
    assert len(set(nba)) == len(nba)
    assert set(churn) < set(nba)
    assert set(CONTEXT_FIELDS) <= set(nba) and not set(CONTEXT_FIELDS) & set(churn)
    assert REQUEST_FIELDS == ["channel", "hour_of_day", "location_type", "request_ts"]


# ---- errors ----


def test_a_missing_source_table_is_a_clear_data_error(tmp_path: Path) -> None:
    sources = write_sources(tmp_path, customers=5, days=20, seed=1)
    (sources / "contacts.parquet").unlink()
    with pytest.raises(DataError, match="contacts"):
        pipeline.build_feature_tables(sources, tmp_path / "out")


def test_apply_before_building_the_feature_tables_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(NotReadyError, match="nextbest features build"):
        features_of(_settings(tmp_path)).apply()


# ---- the feast CLI works on the repo as Feast users expect ----


@pytest.mark.slow
def test_feast_cli_applies_the_repo_from_its_folder(world: Settings, tmp_path: Path) -> None:
    yaml = tmp_path / "feature_store.yaml"
    yaml.write_text(
        (FEATURE_REPO_DIR / "feature_store.yaml")
        .read_text()
        .replace("../.nextbest/features/registry.db", str(tmp_path / "registry.db"))
        .replace("../.nextbest/features/online_store.db", str(tmp_path / "online.db"))
    )
    env = {**os.environ, "NEXTBEST_HOME": str(world.home), "PYTHONWARNINGS": "ignore"}
    feast = str(Path(sys.executable).parent / "feast")
    run = subprocess.run(
        [feast, "-f", str(yaml), "apply"], cwd=FEATURE_REPO_DIR, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # What the CLI registered is what the SDK path registers: same services, views and offline tables.
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(FEATURE_REPO_DIR), fs_yaml_file=yaml)
    assert {s.name for s in store.list_feature_services()} == {CHURN_SERVICE, NBA_SERVICE}
    views = {v.name: v for v in store.list_feature_views()}
    assert set(views) == {*SNAPSHOT_VIEWS, "realtime_state"}
    assert views["customer_profile"].batch_source.path == str(
        world.features_dir / "offline" / "customer_profile.parquet"
    )
    assert [v.name for v in store.list_on_demand_feature_views()] == ["request_context"]
