"""The twin's day-by-day genome is the feature pipeline's genome: `DailyGenome` against `build_feature_tables`.

A small world lives 100 days under the logging policy (long enough for every window, the 90-day ones included, to
fill and then drop its oldest days; contacts with outcomes learnt later, closures, profile changes, statements),
the genome following it day by day. The same world published and built by the batch pipeline must give, for every
snapshot midnight of the world, the same rows (the live customers) with the same value of every feature of the
profile, activity and contact views; and the real-time state after the last day is the batch real-time view's
latest row per customer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from feature_repo.pipeline import build_feature_tables
from feature_repo.specs import (
    ACTIVITY_VIEW,
    CONTACT_VIEW,
    JOIN_KEY,
    PROFILE_VIEW,
    REALTIME_FIELDS,
    REALTIME_VIEW,
    TIMESTAMP_FIELD,
)
from nextbest.features.daily import SNAPSHOT_FIELDS, DailyGenome
from nextbest.simulator import SimulationConfig
from nextbest.simulator.policy import LoggingPolicy
from nextbest.simulator.stepper import World

DAYS = 100


@pytest.fixture(scope="module")
def lived(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[pd.Timestamp, pd.DataFrame], DailyGenome, dict]:
    """(the genome's snapshot at every midnight, the genome after the last day, the batch tables by view)."""
    world = World(SimulationConfig.build(customers=150, days=DAYS, seed=5, chunk_size=80))
    genome = DailyGenome(world.initial_tables(), world.epoch)
    policy = LoggingPolicy(world.table, seed=5)
    snapshots = {}
    rng = np.random.default_rng(0)
    for day in range(DAYS):
        world.step(policy)
        genome.add_day(world.day_tables())
        snap = genome.snapshot()
        snapshots[pd.Timestamp(genome.midnight_s, unit="s", tz="UTC")] = snap
        if day % 10 == 9:  # what the twin reads: the snapshot of the day's asked customers only
            keys = np.sort(rng.choice(snap[JOIN_KEY].to_numpy(), size=20, replace=False))
            part = genome.snapshot(keys).reset_index(drop=True)
            whole = snap[snap[JOIN_KEY].isin(keys)].reset_index(drop=True)
            pd.testing.assert_frame_equal(part, whole, check_dtype=False)
    out = tmp_path_factory.mktemp("twin-genome")
    world.publish(out / "world")
    paths = build_feature_tables(out / "world" / "sources", out / "features", threads=1)
    tables = {view: pq.read_table(path).to_pandas() for view, path in paths.items()}
    return snapshots, genome, tables


def _batch_snapshot(tables: dict[str, pd.DataFrame], t: pd.Timestamp) -> pd.DataFrame:
    """The three snapshot views of the batch build at midnight `t`, joined on the key, in key order."""
    joined = None
    for view in (PROFILE_VIEW, ACTIVITY_VIEW, CONTACT_VIEW):
        frame = tables[view]
        frame = frame[pd.to_datetime(frame[TIMESTAMP_FIELD], utc=True) == t].drop(columns=[TIMESTAMP_FIELD])
        joined = frame if joined is None else joined.merge(frame, on=JOIN_KEY, how="outer")
    assert joined is not None
    return joined.sort_values(JOIN_KEY).reset_index(drop=True)


def test_every_snapshot_feature_matches_the_batch_build(lived) -> None:
    snapshots, _genome, tables = lived
    assert set(SNAPSHOT_FIELDS) <= set().union(*(set(tables[v].columns) for v in tables))
    compared = 0
    for t, snap in snapshots.items():
        batch = _batch_snapshot(tables, t)
        assert len(batch), f"the batch build has no snapshot at {t}"
        assert snap[JOIN_KEY].tolist() == batch[JOIN_KEY].tolist(), f"{t}: not the same live customers"
        for name in SNAPSHOT_FIELDS:
            mine, theirs = snap[name].to_numpy(dtype=np.float64), batch[name].to_numpy(dtype=np.float64)
            same = np.isclose(mine, theirs, rtol=1e-9, atol=1e-6, equal_nan=True)
            assert same.all(), (
                f"{t} {name}: customers {snap[JOIN_KEY].to_numpy()[~same][:5].tolist()} "
                f"daily {mine[~same][:5].tolist()} vs batch {theirs[~same][:5].tolist()}"
            )
        compared += 1
    assert compared == DAYS
    # the windows did fill and empty: the features are not trivially equal
    last = snapshots[max(snapshots)]
    for name in ("contacts_30d", "acceptances_90d", "logins_30d", "txn_count_30d", "complaints_90d"):
        assert any(s[name].sum() > 0 for s in snapshots.values()), f"{name} never non-zero: a weak test"
    assert last["n_products"].gt(0).all()


def test_realtime_state_after_the_last_day_matches_the_batch_view(lived) -> None:
    _snapshots, genome, tables = lived
    latest = tables[REALTIME_VIEW].sort_values([JOIN_KEY, TIMESTAMP_FIELD], kind="stable").groupby(JOIN_KEY).tail(1)
    assert len(latest) > 10
    keys = latest[JOIN_KEY].to_numpy(dtype=np.int64)
    mine = genome.realtime_at(keys, np.full(len(keys), float(genome.midnight_s)))
    theirs = latest[list(REALTIME_FIELDS)].to_numpy(dtype=np.float64)
    same = np.isclose(mine, theirs, rtol=1e-9, atol=1e-6, equal_nan=True)
    assert same.all(), f"real-time state differs for customers {keys[~same.all(axis=1)][:5].tolist()}"
