"""Common random numbers in the steppable world: the same customers under two policies differ only by the policies'
effects; the same policy twice, and the stepped world against `simulate_world`, give identical worlds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.simulator import SimulationConfig, simulate_world
from nextbest.simulator.policy import DecisionPoints, Decisions, LoggingPolicy, NoContactPolicy
from nextbest.simulator.stepper import World
from nextbest.simulator.streams import Stream, Streams

CONFIG = SimulationConfig(customers=600, days=40, seed=7, chunk_size=300)
LIFE = {
    "transactions": ["customer_id", "ts", "amount", "category"],
    "digital_events": ["customer_id", "ts", "channel", "page"],
    "intents": ["customer_id", "intent", "start_ts", "strength"],
}


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _read(world: Path, table: str) -> pd.DataFrame:
    sub = "truth" if table in ("intents", "contact_truth", "churn_hazard") else "sources"
    return pd.read_parquet(world / sub / table)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same customers lived under the logging policy and under no contact at all."""
    out = {}
    for name, make in (("logging", lambda w: LoggingPolicy(w.table, seed=CONFIG.seed)), ("none", lambda w: None)):
        world = World(CONFIG)
        world.run(make(world) or NoContactPolicy())
        folder = tmp_path_factory.mktemp(name)
        world.publish(folder)
        out[name] = folder
    return out


def test_the_stepped_world_under_the_logging_policy_is_the_simulated_world(
    worlds: dict[str, Path], tmp_path: Path
) -> None:
    simulate_world(CONFIG, tmp_path / "sim", workers=2)
    assert _digest(tmp_path / "sim") == _digest(worlds["logging"])


def test_the_same_policy_twice_gives_the_same_days() -> None:
    reports = []
    for _ in range(2):
        world = World(CONFIG.model_copy(update={"days": 12}))
        reports.append(world.run(LoggingPolicy(world.table, seed=CONFIG.seed)))
    for a, b in zip(*reports, strict=True):
        pd.testing.assert_frame_equal(a.contacts, b.contacts)
        pd.testing.assert_frame_equal(a.hazard, b.hazard)
        np.testing.assert_array_equal(a.points.customer_id, b.points.customer_id)


def test_customers_never_contacted_live_the_same_life_under_either_policy(worlds: dict[str, Path]) -> None:
    contacted = set(_read(worlds["logging"], "contacts")["customer_id"])
    everyone = set(_read(worlds["none"], "customers")["customer_id"])
    untouched = everyone - contacted
    assert len(untouched) > 20 and len(contacted) > 300
    for table, cols in {**LIFE, "context_signals": ["customer_id", "ts", "signal"]}.items():
        a, b = (_read(worlds[k], table) for k in ("logging", "none"))
        a = a[a["customer_id"].isin(untouched)][cols].sort_values(cols).reset_index(drop=True)
        b = b[b["customer_id"].isin(untouched)][cols].sort_values(cols).reset_index(drop=True)
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b)
    closed_a = set(_read(worlds["logging"], "closures")["customer_id"]) & untouched
    closed_b = set(_read(worlds["none"], "closures")["customer_id"]) & untouched
    assert closed_a == closed_b


def test_contacted_customers_live_the_same_life_until_their_first_contact(worlds: dict[str, Path]) -> None:
    contacts = _read(worlds["logging"], "contacts")
    first = contacts.groupby("customer_id")["ts"].min().dt.floor("D")
    for table, cols in LIFE.items():
        ts_col = "start_ts" if table == "intents" else "ts"
        frames = []
        for k in ("logging", "none"):
            df = _read(worlds[k], table)
            df = df[df["customer_id"].isin(first.index)]
            df = df[df[ts_col] < df["customer_id"].map(first)]  # days before the customer's first contact
            frames.append(df[cols].sort_values(cols).reset_index(drop=True))
        assert len(frames[0]) > 0
        pd.testing.assert_frame_equal(*frames)


class _OneShot:
    """Offers one action to a chosen set of customers on one day, and nothing otherwise."""

    def __init__(self, day: int, action: int, channel: int, customers: set[int]) -> None:
        self.day, self.action, self.channel, self.customers = day, action, channel, customers

    def decide(self, points: DecisionPoints) -> Decisions:
        out = Decisions.nothing(points.m)
        if points.day == self.day:
            pick = np.isin(points.customer_id, list(self.customers))
            out.action[pick] = self.action
            out.channel[pick] = self.channel
        return out


def test_an_offer_changes_only_the_lives_it_touches() -> None:
    cfg = CONFIG.model_copy(update={"days": 20})
    targets = set(range(1, 601, 3))
    a, b = World(cfg, scheduled_rate=1.0), World(cfg, scheduled_rate=1.0)
    email = a.table.channels.index("email")
    a.run(_OneShot(5, a.table.ids.index("credit_card"), email, targets))
    b.run(NoContactPolicy())
    sa, sb = a.state(), b.state()
    others = ~sa["customer_id"].isin(targets)
    pd.testing.assert_frame_equal(sa[others].reset_index(drop=True), sb[others].reset_index(drop=True))
    assert (sa.loc[~others, "fatigue"] > sb.loc[~others, "fatigue"]).any()


def test_the_days_tables_add_up_to_the_published_world(tmp_path: Path) -> None:
    """What a feature pipeline reads day by day (`initial_tables`, then `day_tables` after each step) is the world."""
    cfg = CONFIG.model_copy(update={"days": 15})
    world = World(cfg)
    parts: dict[str, list[pd.DataFrame]] = {}
    for name, t in world.initial_tables().items():
        parts.setdefault(name, []).append(t.to_pandas())
    policy = LoggingPolicy(world.table, seed=cfg.seed)
    for _ in range(cfg.days):
        world.step(policy)
        for name, t in world.day_tables().items():
            parts.setdefault(name, []).append(t.to_pandas())
    world.publish(tmp_path)
    for name in ("customers", "transactions", "contacts", "context_signals", "complaints", "truth/contact_truth"):
        sub = "" if name.startswith("truth/") else "sources/"
        published = pd.read_parquet(tmp_path / f"{sub}{name}")
        stepped = pd.concat(parts[name], ignore_index=True)
        cols = [c for c in published.columns if c != "closed_at"]
        key = cols[:3]
        a = published[cols].sort_values(key, kind="stable").reset_index(drop=True)
        b = stepped[cols].sort_values(key, kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)


def test_a_customers_draw_does_not_depend_on_who_else_is_drawn_with_them() -> None:
    s = Streams(11)
    everyone = s.uniform(Stream.CHURN, 9, np.arange(1, 1001))
    some = s.uniform(Stream.CHURN, 9, np.array([500, 3, 77]))
    np.testing.assert_array_equal(some, everyone[[499, 2, 76]])
    assert everyone.min() > 0 and everyone.max() < 1 and abs(everyone.mean() - 0.5) < 0.03
    assert not np.array_equal(everyone, s.uniform(Stream.CHURN, 10, np.arange(1, 1001)))  # another day
    assert not np.array_equal(everyone, Streams(12).uniform(Stream.CHURN, 9, np.arange(1, 1001)))  # another seed


def test_a_policy_that_speaks_ids_and_timestamps_gets_the_same_world() -> None:
    """The adapters the twin feeds the serving engine with: points as a frame, decisions back from ids."""
    cfg = CONFIG.model_copy(update={"days": 8})

    class ById:
        def __init__(self, world: World) -> None:
            self.world, self.inner = world, LoggingPolicy(world.table, seed=cfg.seed)

        def decide(self, points: DecisionPoints) -> Decisions:
            frame = self.world.points_frame(points)
            assert len(frame) == points.m and frame["ts"].dt.tz is not None
            d = self.inner.decide(points)
            ids = [self.world.table.ids[a] if a >= 0 else None for a in d.action]
            chans = [self.world.table.channels[c] for c in d.channel]
            out = self.world.decisions(ids, chans, d.propensity)
            out.n_eligible[:] = d.n_eligible
            return out

    a, b = World(cfg), World(cfg)
    ra, rb = a.run(ById(a)), b.run(LoggingPolicy(b.table, seed=cfg.seed))
    for x, y in zip(ra, rb, strict=True):
        pd.testing.assert_frame_equal(x.contacts, y.contacts)
    with pytest.raises(ValueError, match="unknown"):
        a.decisions(["yacht"], ["app"])
