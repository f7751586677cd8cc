"""The oracle: true acceptance and churn probabilities of a simulated world, for any customer, offer and time.

`TrueWorld.load(world_dir)` reads `truth/` and the sources it needs, and rebuilds a customer's state at any time
`ts` exactly as the simulator held it: intent levels from `truth/intents`, the latest signal of each kind at or
before `ts` from `context_signals`, contact fatigue from earlier days' `contacts`, products held from `holdings`,
the drift scenario from `world.json`. It then calls the same `propensity.accept_probability` the simulator drew
outcomes from, so for a logged contact it returns the logged `truth/contact_truth.p_accept`. All lookups are
vectorized joins: thousands of (customer, action) rows cost milliseconds, not a Python loop per row.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.catalogue import PRODUCTS, RISK_BANDS, SEGMENTS, load_catalogue
from nextbest.errors import DataError, NotReadyError
from nextbest.simulator import params as P
from nextbest.simulator.population import risk_band
from nextbest.simulator.propensity import (
    AcceptState,
    ActionTable,
    accept_probability,
    drift_shift,
    hash_noise,
    organic_within,
    prevented_churn,
    price_shift,
    sigmoid,
)

logger = logging.getLogger(__name__)

_DAY = P.SECONDS_PER_DAY


def _read(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    if not path.exists():
        raise NotReadyError(f"{path} is missing: simulate a world first (`nextbest simulate`)")
    return pd.read_parquet(path, columns=columns)


def _seconds(ts: pd.Series | pd.DatetimeIndex, epoch: int) -> np.ndarray:
    """UTC timestamps to int64 seconds since the world start (floor)."""
    values = pd.DatetimeIndex(ts)
    if values.tz is None:
        raise DataError("timestamps must be timezone-aware UTC (e.g. pd.Timestamp('2026-03-01 10:00', tz='UTC'))")
    ns = values.tz_convert("UTC").as_unit("ns").asi8
    return ns // 1_000_000_000 - epoch


@dataclass
class _Customers:
    ids: np.ndarray  # sorted
    birth_year: np.ndarray
    segment: np.ndarray
    income: np.ndarray
    signup_s: np.ndarray
    closed_s: np.ndarray  # int64 max if open
    affinity: np.ndarray  # (n, n_products)
    price_sensitivity: np.ndarray
    fatigue_sensitivity: np.ndarray
    channel_affinity: np.ndarray  # (n, n_channels)

    def rows(self, customer_id: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.ids, customer_id)
        pos = np.minimum(pos, len(self.ids) - 1)
        bad = self.ids[pos] != customer_id
        if bad.any():
            missing = np.unique(np.asarray(customer_id)[bad])[:5].tolist()
            raise DataError(f"customer_id(s) {missing} are not in this world")
        return pos


class TrueWorld:
    """The truth of one simulated world (see module docstring)."""

    def __init__(self, world_dir: Path, meta: dict) -> None:
        self.world_dir = world_dir
        self.meta = meta
        self.seed = int(meta["seed"])
        self.epoch = int(pd.Timestamp(meta["start_date"], tz="UTC").timestamp())
        self.days = int(meta["days"])
        self.scenario: str | None = meta.get("scenario")
        self.scenario_start_day: int | None = meta.get("scenario_start_day")
        catalogue = load_catalogue()
        if list(catalogue.action_ids) != list(meta["catalogue_actions"]) or list(catalogue.channels) != list(
            meta["catalogue_channels"]
        ):
            raise DataError(
                "the offer catalogue differs from the one this world was simulated with; "
                "re-simulate the world or point NEXTBEST_CATALOGUE at the original catalogue"
            )
        self.table = ActionTable.from_catalogue(catalogue)
        self._action_index = {a: i for i, a in enumerate(self.table.ids)}
        self._channel_index = {c: i for i, c in enumerate(self.table.channels)}
        self._load()

    @classmethod
    def load(cls, world_dir: str | Path) -> TrueWorld:
        """Open a world folder (the one holding `sources/` and `truth/`)."""
        world_dir = Path(world_dir)
        meta_path = world_dir / "truth" / "world.json"
        if not meta_path.is_file():
            raise NotReadyError(
                f"no simulated world at {world_dir} (missing truth/world.json): run `nextbest simulate`"
            )
        return cls(world_dir, json.loads(meta_path.read_text()))

    # ---- loading
    def _load(self) -> None:
        src, tru, ep = self.world_dir / "sources", self.world_dir / "truth", self.epoch
        cust = _read(
            src / "customers", ["customer_id", "valid_from", "birth_year", "segment", "income_monthly", "signup_date"]
        )
        cust = cust.sort_values(["customer_id", "valid_from"]).drop_duplicates("customer_id", keep="first")
        lat = _read(tru / "customer_latent").set_index("customer_id").reindex(cust["customer_id"].to_numpy())
        closures = _read(src / "closures")
        ids = cust["customer_id"].to_numpy(np.int64)
        closed_s = np.full(len(ids), np.iinfo(np.int64).max, dtype=np.int64)
        if len(closures):
            pos = np.searchsorted(ids, closures["customer_id"].to_numpy(np.int64))
            closed_s[pos] = _seconds(closures["closed_at"], ep)
        self.customers = _Customers(
            ids=ids,
            birth_year=cust["birth_year"].to_numpy(np.int64),
            segment=pd.Categorical(cust["segment"], categories=SEGMENTS).codes.astype(np.int64),
            income=cust["income_monthly"].to_numpy(np.float64),
            signup_s=_seconds(cust["signup_date"], ep),
            closed_s=closed_s,
            affinity=lat[[f"affinity_{p}" for p in PRODUCTS]].to_numpy(np.float64),
            price_sensitivity=lat["price_sensitivity"].to_numpy(np.float64),
            fatigue_sensitivity=lat["fatigue_sensitivity"].to_numpy(np.float64),
            channel_affinity=lat[[f"channel_affinity_{c}" for c in self.table.channels]].to_numpy(np.float64),
        )
        it = _read(tru / "intents")
        self._intents = pd.DataFrame(
            {
                "customer_id": it["customer_id"].to_numpy(np.int64),
                "k": pd.Categorical(it["intent"], categories=P.INTENTS).codes.astype(np.int64),
                "start": _seconds(it["start_ts"], ep),
                "strength": it["strength"].to_numpy(np.float64),
                "half": it["half_life_days"].to_numpy(np.float64),
            }
        )
        sg = _read(src / "context_signals", ["customer_id", "ts", "signal"])
        self._signals = pd.DataFrame(
            {
                "customer_id": sg["customer_id"].to_numpy(np.int64),
                "j": pd.Categorical(sg["signal"], categories=P.SIGNALS).codes.astype(np.int64),
                "sts": _seconds(sg["ts"], ep),
            }
        )
        ct = _read(src / "contacts", ["customer_id", "ts", "outcome"])
        self._contacts = pd.DataFrame(
            {
                "customer_id": ct["customer_id"].to_numpy(np.int64),
                "cday": _seconds(ct["ts"], ep) // _DAY,
                "dismissed": (ct["outcome"] == "dismissed").to_numpy(),
            }
        )
        ho = _read(src / "holdings", ["customer_id", "product", "opened_at", "closed_at"])
        closed_at = ho["closed_at"]
        self._holdings = pd.DataFrame(
            {
                "customer_id": ho["customer_id"].to_numpy(np.int64),
                "product": pd.Categorical(ho["product"], categories=PRODUCTS).codes.astype(np.int64),
                "opened": _seconds(ho["opened_at"], ep),
                "closed": np.where(
                    closed_at.isna(), np.iinfo(np.int64).max, _seconds(closed_at.fillna(pd.Timestamp(0, tz="UTC")), ep)
                ),
            }
        )
        self._hazard: pd.DataFrame | None = None
        prof = _read(src / "customers", ["customer_id", "valid_from", "credit_score"])
        self._profiles = pd.DataFrame(
            {
                "customer_id": prof["customer_id"].to_numpy(np.int64),
                "t": _seconds(prof["valid_from"], ep),
                "credit_score": prof["credit_score"].to_numpy(np.int64),
            }
        ).sort_values("t")

    # ---- the oracle
    def p_accept(self, frame: pd.DataFrame) -> np.ndarray:
        """True probability that showing `action_id` on `channel` at `ts` is accepted, one per row.

        `frame` columns: customer_id, action_id, channel, ts (tz-aware UTC); optional `signal` (a real-time signal
        just observed at ts, e.g. "airport_checkin", or null) and `location_type` (accepted, informational: the
        context acts through the signal). A product the customer already holds, or a customer not (yet / any
        more) a customer at ts, gives 0.
        """
        required = {"customer_id", "action_id", "channel", "ts"}
        missing = required - set(frame.columns)
        if missing:
            raise DataError(f"p_accept frame is missing column(s) {sorted(missing)}; needs {sorted(required)}")
        m = len(frame)
        if m == 0:
            return np.empty(0)
        cid = frame["customer_id"].to_numpy(np.int64)
        ts = _seconds(frame["ts"], self.epoch)
        act = self._codes(frame["action_id"], self._action_index, "action_id")
        chn = self._codes(frame["channel"], self._channel_index, "channel")
        cu = self.customers
        r = cu.rows(cid)
        day = ts // _DAY
        years = pd.DatetimeIndex(pd.to_datetime((ts + self.epoch), unit="s", utc=True)).year.to_numpy()
        age = (years - cu.birth_year[r]).astype(np.float64)

        level = self._intent_levels(cid, ts)
        last = self._last_signals(cid, ts)
        if "signal" in frame.columns:
            sig = frame["signal"]
            has = sig.notna().to_numpy()
            if has.any():
                j = self._codes(sig[has], {s: i for i, s in enumerate(P.SIGNALS)}, "signal")
                rows = np.nonzero(has)[0]
                last[rows, j] = ts[rows]
        age_h = np.where(last == np.iinfo(np.int64).min, np.inf, (ts[:, None] - last) / 3600.0)
        fat_c, fat_d = self._fatigue(cid, day)
        prod = self.table.product[act]
        aff = np.where(prod >= 0, cu.affinity[r, np.maximum(prod, 0)], 0.0)
        after = (ts >= self.scenario_start_day * _DAY) if self.scenario_start_day is not None else np.zeros(m, bool)
        state = AcceptState(
            action=act,
            channel=chn,
            segment=cu.segment[r],
            age=age,
            income=cu.income[r],
            affinity=aff,
            price_sensitivity=cu.price_sensitivity[r],
            fatigue_sensitivity=cu.fatigue_sensitivity[r],
            channel_affinity=cu.channel_affinity[r, chn],
            intent_level=level,
            signal_age_hours=age_h,
            fatigue_contacts=fat_c,
            fatigue_dismissals=fat_d,
            drift=drift_shift(self.table, act, self.scenario, after),
            noise=hash_noise(self.seed, cid, act, day),
        )
        if "price" in frame.columns:  # an offered price (NaN: the list price) moves acceptance by the price response
            risk = risk_band(self._credit_scores(cid, ts))
            price = pd.to_numeric(frame["price"], errors="coerce").to_numpy(np.float64)
            state.price_shift = price_shift(self.table, act, risk, price, cu.price_sensitivity[r])
        p = accept_probability(self.table, state)
        held = self._holds(cid, prod, ts)
        inactive = (ts <= cu.signup_s[r]) | (ts >= cu.closed_s[r])
        return np.where(held | inactive, 0.0, p)

    def optimal_price(self, frame: pd.DataFrame) -> np.ndarray:
        """The price on the customer's approved band that maximises the true expected margin of the offer,
        P(accept at price) x margin(price) (the catalogue's margin: the action's value at list price, 0 at the band's
        break-even rate), one per row of a `p_accept` frame; NaN for an unpriced action or a customer with no
        band. Nothing to do with what any model knows: the truth's own price response."""
        catalogue = load_catalogue()
        p_list = self.p_accept(frame.drop(columns=["price"], errors="ignore"))
        cid = frame["customer_id"].to_numpy(np.int64)
        act = self._codes(frame["action_id"], self._action_index, "action_id")
        risk = risk_band(self._credit_scores(cid, _seconds(frame["ts"], self.epoch)))
        sens = self.customers.price_sensitivity[self.customers.rows(cid)]
        out = np.full(len(frame), np.nan)
        logit_list = np.log(np.clip(p_list, 1e-12, 1 - 1e-12) / (1 - np.clip(p_list, 1e-12, 1 - 1e-12)))
        for action_id, spec in catalogue.pricing.items():
            a = self._action_index[action_id]
            for rb_i, rb in enumerate(RISK_BANDS):
                band = spec.band_for(rb)
                rows = np.nonzero((act == a) & (risk == rb_i) & (p_list > 0))[0]
                if band is None or not len(rows):
                    continue
                grid = band.grid
                shift = price_shift(
                    self.table,
                    np.full((len(rows), len(grid)), a),
                    np.full((len(rows), len(grid)), rb_i),
                    np.broadcast_to(grid, (len(rows), len(grid))),
                    sens[rows, None],
                )
                value = sigmoid(logit_list[rows, None] + shift) * spec.margin_factor(band, grid)[None, :]
                out[rows] = grid[np.argmax(value, axis=1)]
        return out

    def churn_probability(
        self, customer_ids: np.ndarray | list[int], ts: pd.Timestamp | pd.Series | np.ndarray, horizon_days: int
    ) -> np.ndarray:
        """True probability that each customer closes within `horizon_days` of `ts`, from that day's true hazard.

        Uses the latest `truth/churn_hazard` row at or before `ts` (daily or weekly, see world.json) held constant
        over the horizon: 1 - (1 - h)^H. Customers already closed, or not yet joined, get 0.
        """
        if horizon_days <= 0:
            raise DataError(f"horizon_days must be positive, got {horizon_days}")
        cid = np.asarray(customer_ids, dtype=np.int64)
        if isinstance(ts, pd.Timestamp):
            tsec = np.full(len(cid), _seconds(pd.DatetimeIndex([ts]), self.epoch)[0])
        else:
            tsec = _seconds(pd.Series(ts), self.epoch)
            if len(tsec) != len(cid):
                raise DataError("ts must be one timestamp or one per customer")
        hz = self._hazards()
        q = pd.DataFrame({"customer_id": cid, "t": tsec, "i": np.arange(len(cid))}).sort_values("t")
        merged = pd.merge_asof(q, hz, left_on="t", right_on="t", by="customer_id", direction="backward")
        h = merged.sort_values("i")["hazard"].to_numpy(np.float64)
        r = self.customers.rows(cid)
        active = (tsec > self.customers.signup_s[r]) & (tsec < self.customers.closed_s[r])
        p = 1.0 - np.power(1.0 - np.nan_to_num(h, nan=0.0), horizon_days)
        return np.where(active, p, 0.0)

    def churn_prevented(self, frame: pd.DataFrame, horizon_days: int = P.CHURN_PREVENTION_HORIZON_DAYS) -> np.ndarray:
        """True drop in the probability of closing within `horizon_days` if the customer ACCEPTS the action at `ts`.

        What the simulator does after an acceptance, replayed on the day's true hazard h (held constant, as in
        `churn_probability`): a retention action adds `CHURN_RETENTION_GAIN` to the daily churn logit, fading with
        `CHURN_RETENTION_TAU_DAYS`; a service action `CHURN_SERVICE_GAIN` with `CHURN_SERVICE_TAU_DAYS`; a sale opens
        a product, `CHURN_PRODUCTS_GAIN` for as long as it is held (the horizon). With g_d the effect on day d,

            prevented = prod_{d<H} (1 - sigmoid(logit(h) + g_d)) - (1 - h)^H

        `frame` columns: customer_id, action_id, ts (tz-aware UTC). Inactive customers get 0.
        """
        if horizon_days <= 0:
            raise DataError(f"horizon_days must be positive, got {horizon_days}")
        missing = {"customer_id", "action_id", "ts"} - set(frame.columns)
        if missing:
            raise DataError(f"churn_prevented frame is missing column(s) {sorted(missing)}")
        if len(frame) == 0:
            return np.empty(0)
        act = self._codes(frame["action_id"], self._action_index, "action_id")
        h = self.churn_probability(frame["customer_id"].to_numpy(np.int64), frame["ts"].reset_index(drop=True), 1)
        return prevented_churn(h, self.table.churn_gain[act], self.table.churn_tau[act], horizon_days)

    def p_organic(self, frame: pd.DataFrame, horizon_days: int = P.ORGANIC_HORIZON_DAYS) -> np.ndarray:
        """True P(the customer takes the action's product on their own within `horizon_days` of `ts`), no contact.

        What a scorer needs to credit only the increment of an offer: an acceptance by a customer who would have
        bought anyway within the horizon is mostly pull-forward, so a sale is worth about p_accept x (1 - p_organic)
        of its value more than doing nothing. From the intents at the decision day's midnight, decaying, with no new
        life event and the customer staying (churn is not subtracted); the simulator's rule that a day with no
        intent above LIVE_INTENT_LEVEL has no uptake, age >= 18, and the credit check (risk band at ts) of loans.
        It equals `contact_truth.p_organic` for every logged contact. Non-product actions, products without an
        organic path, a product already held or an inactive customer give 0. `frame`: customer_id, action_id, ts.
        """
        missing = {"customer_id", "action_id", "ts"} - set(frame.columns)
        if missing:
            raise DataError(f"p_organic frame is missing column(s) {sorted(missing)}")
        if len(frame) == 0:
            return np.empty(0)
        cid = frame["customer_id"].to_numpy(np.int64)
        ts = _seconds(frame["ts"], self.epoch)
        act = self._codes(frame["action_id"], self._action_index, "action_id")
        cu = self.customers
        r = cu.rows(cid)
        day_start = (ts // _DAY) * _DAY
        level = self._intent_levels(cid, day_start)
        half = np.array([P.INTENT_HALF_LIFE_DAYS[k] for k in P.INTENTS])
        gain = self.table.organic_gain[act]
        years = pd.DatetimeIndex(pd.to_datetime((ts + self.epoch), unit="s", utc=True)).year.to_numpy()
        can = (years - cu.birth_year[r]) >= 18
        can &= ~self.table.organic_credit[act] | (risk_band(self._credit_scores(cid, ts)) <= 1)
        can &= ~self._holds(cid, self.table.product[act], ts) & (ts > cu.signup_s[r]) & (ts < cu.closed_s[r])
        some = np.nonzero(can & ((gain * level).sum(axis=1) > 0))[0]
        p = np.zeros(len(frame))
        if len(some):
            p[some] = organic_within(gain[some], level[some], half, horizon_days)
        return p

    def intent_levels(self, customer_ids: np.ndarray | list[int], ts: pd.Timestamp) -> pd.DataFrame:
        """The latent intents' decayed strength per customer at `ts` (one column per intent), for exploration."""
        cid = np.asarray(customer_ids, dtype=np.int64)
        tsec = np.full(len(cid), _seconds(pd.DatetimeIndex([ts]), self.epoch)[0])
        return pd.DataFrame(
            self._intent_levels(cid, tsec), columns=list(P.INTENTS), index=pd.Index(cid, name="customer_id")
        )

    # ---- state reconstruction (vectorized joins)
    @staticmethod
    def _codes(values: pd.Series, index: dict[str, int], what: str) -> np.ndarray:
        codes = pd.Series(values).map(index)
        if codes.isna().any():
            bad = sorted(set(pd.Series(values)[codes.isna()].astype(str)))[:5]
            raise DataError(f"unknown {what} value(s) {bad}; known: {', '.join(index)}")
        return codes.to_numpy(np.int64)

    def _pairs(self, events: pd.DataFrame, cid: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
        q = pd.DataFrame({"customer_id": cid, "qi": np.arange(len(cid)), "qt": ts})
        return q.merge(events, on="customer_id", how="inner")

    def _intent_levels(self, cid: np.ndarray, ts: np.ndarray) -> np.ndarray:
        level = np.zeros((len(cid), len(P.INTENTS)))
        pr = self._pairs(self._intents, cid, ts)
        pr = pr[pr["start"] <= pr["qt"]]
        if len(pr):
            contrib = pr["strength"].to_numpy() * np.power(
                0.5, ((pr["qt"] - pr["start"]).to_numpy() / _DAY) / pr["half"].to_numpy()
            )
            np.add.at(level, (pr["qi"].to_numpy(), pr["k"].to_numpy()), contrib)
        return level

    def _last_signals(self, cid: np.ndarray, ts: np.ndarray) -> np.ndarray:
        last = np.full((len(cid), len(P.SIGNALS)), np.iinfo(np.int64).min, dtype=np.int64)
        pr = self._pairs(self._signals, cid, ts)
        pr = pr[pr["sts"] <= pr["qt"]]
        if len(pr):
            np.maximum.at(last, (pr["qi"].to_numpy(), pr["j"].to_numpy()), pr["sts"].to_numpy())
        return last

    def _fatigue(self, cid: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fat_c = np.zeros(len(cid))
        fat_d = np.zeros(len(cid))
        pr = self._pairs(self._contacts, cid, day)
        pr = pr[pr["cday"] < pr["qt"]]
        if len(pr):
            gap = (pr["qt"] - pr["cday"]).to_numpy(np.float64)
            qi = pr["qi"].to_numpy()
            np.add.at(fat_c, qi, np.exp(-gap / P.FATIGUE_CONTACT_TAU_DAYS))
            dis = pr["dismissed"].to_numpy()
            np.add.at(fat_d, qi[dis], np.exp(-gap[dis] / P.FATIGUE_DISMISS_TAU_DAYS))
        return fat_c, fat_d

    def _credit_scores(self, cid: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Each customer's credit score at ts (the latest customers row at or before it)."""
        q = pd.DataFrame({"customer_id": cid, "t": ts, "i": np.arange(len(cid))}).sort_values("t")
        merged = pd.merge_asof(q, self._profiles, left_on="t", right_on="t", by="customer_id", direction="backward")
        score = merged.sort_values("i")["credit_score"].to_numpy(np.float64)
        return np.nan_to_num(score, nan=0.0).astype(np.int64)

    def _holds(self, cid: np.ndarray, prod: np.ndarray, ts: np.ndarray) -> np.ndarray:
        q = pd.DataFrame({"customer_id": cid, "product": prod, "qi": np.arange(len(cid)), "qt": ts})
        pr = q[q["product"] >= 0].merge(self._holdings, on=["customer_id", "product"], how="inner")
        pr = pr[(pr["opened"] <= pr["qt"]) & (pr["qt"] < pr["closed"])]
        held = np.zeros(len(cid), dtype=bool)
        held[pr["qi"].to_numpy()] = True
        return held

    def _hazards(self) -> pd.DataFrame:
        if self._hazard is None:
            hz = _read(self.world_dir / "truth" / "churn_hazard")
            self._hazard = pd.DataFrame(
                {
                    "customer_id": hz["customer_id"].to_numpy(np.int64),
                    "t": _seconds(hz["date"], self.epoch),
                    "hazard": hz["hazard"].to_numpy(np.float64),
                }
            ).sort_values("t")
        return self._hazard
