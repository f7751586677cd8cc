"""The ASOF point-in-time path (nextbest/features/point_in_time.py) returns exactly Feast's training rows.

One small seeded world (tests/features_fixtures.py, as tests/test_features.py builds it) is built and applied once
per module in a tmp home; both paths read the same registry and parquet files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_repo.definitions import SNAPSHOT_TTL
from feature_repo.specs import CHURN_SERVICE, NBA_SERVICE, PROFILE_VIEW
from nextbest.features import features_of, get_store
from nextbest.features.point_in_time import historical_features
from nextbest.settings import Settings
from tests.features_fixtures import write_sources

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning")

KEYS = ["event_timestamp", "customer_id", "row"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(home=tmp_path_factory.mktemp("pit_home"))
    write_sources(settings.world_dir, customers=40, days=40, seed=3)
    features = features_of(settings)
    features.build()
    features.apply()
    return settings


@pytest.fixture(scope="module")
def entity(world: Settings) -> pd.DataFrame:
    """Entity rows at every edge: a feature row's exact timestamp, odd seconds after it, the TTL's last microsecond
    and the one after, before the customer's first row, an unknown customer, and the same row twice."""
    profile = pd.read_parquet(world.features_dir / "offline" / f"{PROFILE_VIEW}.parquet")
    rng = np.random.default_rng(0)
    picked = profile.sample(120, random_state=1)[["customer_id", "event_timestamp"]]
    exact = picked.iloc[:60]
    later = picked.iloc[60:].assign(
        event_timestamp=lambda d: d["event_timestamp"] + pd.to_timedelta(rng.integers(1, 3 * 86_400, len(d)), "s")
    )
    last = profile.groupby("customer_id", as_index=False)["event_timestamp"].max().head(8)
    at_ttl = last.assign(event_timestamp=last["event_timestamp"] + SNAPSHOT_TTL)
    past_ttl = last.assign(event_timestamp=at_ttl["event_timestamp"] + pd.Timedelta(microseconds=1))
    first = profile.groupby("customer_id", as_index=False)["event_timestamp"].min().head(5)
    before = first.assign(event_timestamp=first["event_timestamp"] - pd.Timedelta(seconds=1))
    unknown = pd.DataFrame({"customer_id": [999_999], "event_timestamp": [profile["event_timestamp"].max()]})
    rows = pd.concat([exact, later, at_ttl, past_ttl, before, unknown, exact.iloc[:3]], ignore_index=True)
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    rows["row"] = np.arange(len(rows))
    rows["label"] = (rows["row"] % 3 == 0).astype("int8")
    rows["note"] = np.where(rows["row"] % 2 == 0, "even", "odd")
    return rows


def _feast(world: Settings, entity: pd.DataFrame, service: str) -> pd.DataFrame:
    store = get_store(world)
    return store.get_historical_features(entity_df=entity.copy(), features=store.get_feature_service(service)).to_df()


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEYS, ignore_index=True)


def test_asof_churn_rows_equal_feast_rows_at_every_edge(world: Settings, entity: pd.DataFrame) -> None:
    feast = _feast(world, entity, CHURN_SERVICE)
    asof = historical_features(get_store(world), entity.copy(), CHURN_SERVICE, "asof")
    assert list(asof.columns) == list(feast.columns)
    pd.testing.assert_frame_equal(_sorted(asof), _sorted(feast))
    # The edges are real: rows at the TTL's end have features, a microsecond later none, nor before the first row.
    by_row = _sorted(asof).set_index("row")["age"]
    n = len(entity)
    at_ttl, past_ttl, before = range(120, 128), range(128, 136), range(136, 141)
    assert by_row.loc[list(at_ttl)].notna().all()
    assert by_row.loc[list(past_ttl)].isna().all()
    assert by_row.loc[list(before)].isna().all()
    assert np.isnan(by_row.loc[141])  # unknown customer
    assert len(asof) == n
    # Exactly at a feature row's timestamp: that row's values (tenure grows daily), not the row before.
    profile = pd.read_parquet(world.features_dir / "offline" / f"{PROFILE_VIEW}.parquet")
    exact = asof[asof["row"] < 60].merge(profile, on=["customer_id", "event_timestamp"], suffixes=("", "_table"))
    assert len(exact) == 60
    np.testing.assert_array_equal(exact["tenure_days"], exact["tenure_days_table"])


def test_asof_rows_come_back_in_entity_order(world: Settings, entity: pd.DataFrame) -> None:
    shuffled = entity.sample(frac=1.0, random_state=4).reset_index(drop=True)
    asof = historical_features(get_store(world), shuffled.copy(), CHURN_SERVICE, "asof")
    assert asof["row"].tolist() == shuffled["row"].tolist()


def test_asof_nba_rows_equal_feast_rows_with_the_on_demand_view(world: Settings, entity: pd.DataFrame) -> None:
    rows = entity.assign(channel="app", hour_of_day=12, location_type="airport")
    rows["request_ts"] = (rows["event_timestamp"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    feast = _feast(world, rows, NBA_SERVICE)
    asof = historical_features(get_store(world), rows.copy(), NBA_SERVICE, "asof")
    assert list(asof.columns) == list(feast.columns)
    assert "hours_since_airport_checkin" in asof.columns  # the on-demand view ran
    pd.testing.assert_frame_equal(_sorted(asof), _sorted(feast))


def test_churn_training_set_is_the_same_through_feast_and_asof(world: Settings) -> None:
    from training.datasets import build_churn_training_set

    sets = {}
    for method in ("feast", "asof"):
        settings = world.model_copy(
            update={"features": world.features.model_copy(update={"offline_retrieval": method})}
        )
        sets[method] = build_churn_training_set(settings, horizon_days=7, snapshot_every_days=3, warmup_days=7)
    assert len(sets["asof"].frame) > 100
    pd.testing.assert_frame_equal(sets["asof"].frame, sets["feast"].frame)
    assert sets["asof"].feature_names == sets["feast"].feature_names


def test_unknown_method_is_refused(world: Settings, entity: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown point-in-time method"):
        historical_features(get_store(world), entity, CHURN_SERVICE, "spark")  # type: ignore[arg-type]
