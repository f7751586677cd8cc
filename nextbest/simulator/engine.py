"""The day loop: one chunk of customers lived through the world's days, vectorized over customers.

Each day, in this order (the order is part of the truth's definition, see `truth.py`):
1. intents decay and new life events arrive (at midnight); financial distress may lower the credit score;
2. context signals fire (driven by intents), salary arrives on pay day, transactions and app/web events happen;
3. the logging policy decides contacts (triggered by a signal, or scheduled) and outcomes are drawn from the
   true acceptance probability; accepted sales open the product, dismissals raise fatigue (and may revoke consent);
4. products are taken up organically (late evening, from intents);
5. the true churn hazard is computed and closures drawn (at 23:59:59); statements are cut on statement days.
Times inside a chunk are int64 seconds since the world start; `writer.py` turns them into UTC timestamps.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nextbest.catalogue import PRODUCTS
from nextbest.simulator import params as P
from nextbest.simulator.config import SimulationConfig
from nextbest.simulator.policy import LoggingPolicy
from nextbest.simulator.population import SEG_SB, Population, risk_band
from nextbest.simulator.propensity import (
    AcceptState,
    ActionTable,
    accept_probability,
    decay,
    drift_shift,
    hash_noise,
    sigmoid,
)

logger = logging.getLogger(__name__)

DAY = P.SECONDS_PER_DAY
NEVER = np.int64(-(10**12))  # "no signal yet": so old that every recency effect is exactly zero

TX_CATEGORIES: tuple[str, ...] = (
    "groceries",
    "restaurants",
    "travel",
    "fuel",
    "auto",
    "home",
    "utilities",
    "online_retail",
    "childcare",
    "healthcare",
    "cash",
    "fees",
    "salary",
    "transfer_in",
    "transfer_out",
    "competitor_transfer",
)
TX_CHANNELS: tuple[str, ...] = ("card_present", "online", "atm", "transfer")
TX_DIRECTIONS: tuple[str, ...] = ("debit", "credit")
COUNTRIES: tuple[str, ...] = (P.HOME_COUNTRY, *P.TRAVEL_COUNTRIES)
PAGES: tuple[str, ...] = (
    "mortgage_calculator",
    "loan_calculator",
    "travel",
    "cards",
    "savings_rates",
    "investments",
    "insurance",
    "business",
    "close_account",
    "fees",
    "help",
)
CLOSURE_REASONS: tuple[str, ...] = ("competitor", "fees", "service", "moved", "other")
OUTCOMES: tuple[str, ...] = ("accepted", "dismissed", "ignored")

# everyday spending: category index, base weight, median amount EUR, channel index
_SPEND = np.array(
    [
        # cat, weight, median, channel
        (0, 0.30, 38.0, 0),
        (1, 0.14, 32.0, 0),
        (2, 0.02, 180.0, 1),
        (3, 0.07, 60.0, 0),
        (4, 0.02, 140.0, 0),
        (5, 0.05, 85.0, 0),
        (6, 0.06, 75.0, 3),
        (7, 0.16, 48.0, 1),
        (8, 0.006, 90.0, 0),
        (9, 0.04, 60.0, 0),
        (10, 0.07, 90.0, 2),
        (14, 0.05, 250.0, 3),
    ]
)
_SPEND_CAT = _SPEND[:, 0].astype(np.int64)
_SPEND_W = _SPEND[:, 1]
_SPEND_MED = _SPEND[:, 2]
_SPEND_CH = _SPEND[:, 3].astype(np.int64)
# intent -> (spend category index into _SPEND rows, weight gain per unit level)
_INTENT_SPEND = {"travel": (2, 0.25), "car_purchase": (4, 0.3), "home_purchase": (5, 0.25), "new_child": (8, 0.3)}

_SPEND_CUM = np.cumsum(_SPEND_W) / _SPEND_W.sum()
_I = {k: i for i, k in enumerate(P.INTENTS)}
_S = {k: i for i, k in enumerate(P.SIGNALS)}
_PR = {k: i for i, k in enumerate(PRODUCTS)}
_PG = {k: i for i, k in enumerate(PAGES)}
_TC = {k: i for i, k in enumerate(TX_CATEGORIES)}
_SPEND_INTENTS = np.array([_I[k] for k in _INTENT_SPEND])
_TRIGGER_P = np.array([P.TRIGGER_PROBABILITY[s] for s in P.SIGNALS])
# hours of the day a signal can fire: [lo, lo + span)
_SIG_HOURS = {"airport_checkin": (5, 16), "complaint": (9, 9), "car_dealership_visit": (9, 10), "salary_credit": (6, 1)}
# daily signal probability = base + gain * level of the driving intent (column 0 with gain 0 when none drives it)
_SIG_DRIVER = np.array([_I[P.SIGNAL_DRIVER[s][0]] if P.SIGNAL_DRIVER[s][0] else 0 for s in P.SIGNALS])
_SIG_BASE = np.array([P.SIGNAL_DRIVER[s][1] for s in P.SIGNALS])
_SIG_GAIN = np.array([P.SIGNAL_DRIVER[s][2] if P.SIGNAL_DRIVER[s][0] else 0.0 for s in P.SIGNALS])
_SIG_HOUR_LO = np.array([_SIG_HOURS.get(s, (8, 13))[0] for s in P.SIGNALS], dtype=np.int64)
_SIG_HOUR_SPAN = np.array([_SIG_HOURS.get(s, (8, 13))[1] for s in P.SIGNALS], dtype=np.int64)
_LOC = {k: i for i, k in enumerate(P.LOCATION_TYPES)}
_SIG_LOC = np.array([_LOC[P.SIGNAL_LOCATION[s]] for s in P.SIGNALS])
_PRODUCT_AMOUNT = np.array([P.PRODUCT_AMOUNT[p] for p in PRODUCTS])
_INTERACTIVE = ("app", "web", "push", "atm", "call_centre")  # channels where an offer is explicitly dismissed
# page -> the intents that send a customer there, with the daily probability per unit level (x engagement)
_INTENT_PAGES: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = (
    ("mortgage_calculator", (("home_purchase", 0.25),)),
    ("loan_calculator", (("car_purchase", 0.2), ("financial_distress", 0.06))),
    ("travel", (("travel", 0.2),)),
    ("close_account", (("switching", 0.12),)),
    ("fees", (("switching", 0.06),)),
    ("help", (("financial_distress", 0.1),)),
    ("investments", (("retirement", 0.08),)),
    ("savings_rates", (("new_child", 0.05), ("retirement", 0.04))),
    ("insurance", (("home_purchase", 0.06), ("new_child", 0.04))),
)


def _static_intent_rates(age: np.ndarray, pop: Population) -> np.ndarray:
    """(n, n_intents) daily arrival rates that depend only on who the customer is (and their age this year)."""
    rate = np.zeros((len(age), len(P.INTENTS)))
    rate[:, _I["home_purchase"]] = np.where((age >= 25) & (age <= 45), 2.5, 0.4)
    rate[:, _I["car_purchase"]] = np.where((age >= 20) & (age <= 70), 1.2, 0.3)
    rate[:, _I["travel"]] = pop.travel_propensity
    rate[:, _I["new_child"]] = np.where((age >= 24) & (age <= 42), 4.0, 0.02)
    rate[:, _I["retirement"]] = np.where((age >= 58) & (age <= 67), 8.0, 0.02)
    return rate * np.array([P.INTENT_BASE_RATE[k] for k in P.INTENTS])[None, :]


class _Columns:
    """Append-only column store for one table: lists of arrays concatenated once at the end of the chunk."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {}

    def add(self, **cols: np.ndarray) -> None:
        n = None
        for k, v in cols.items():
            v = np.asarray(v)
            if n is None:
                n = v.shape[0]
            self._parts.setdefault(k, []).append(v)

    def result(self, names: dict[str, np.dtype]) -> dict[str, np.ndarray]:
        return {
            k: (np.concatenate(self._parts[k]).astype(dt, copy=False) if self._parts.get(k) else np.empty(0, dt))
            for k, dt in names.items()
        }


@dataclass
class ChunkResult:
    """All rows one chunk produced (times in seconds since world start) plus the AUC ingredients."""

    tables: dict[str, dict[str, np.ndarray]]
    churn_scores: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # horizon -> (p, label)
    accept_scores: tuple[np.ndarray, np.ndarray] = (np.empty(0), np.empty(0, dtype=bool))


def _choice_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (m, k) non-negative weight matrix."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), weights.shape[1] - 1)


# one day's transactions from one stage: (rows, ts, amount, direction, category, channel, country)
_Tx = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _transfer_rows(r: np.ndarray, ts: np.ndarray, amt: np.ndarray, direction: int, category: str) -> _Tx:
    """Transaction rows for account transfers (channel `transfer`, home country)."""
    zeros = np.zeros(len(r), np.int64)
    return (r, ts, amt, zeros + direction, zeros + _TC[category], zeros + 3, zeros)


@dataclass
class _Today:
    """What the stages of one day share: the day, the active customers and what happened to them so far."""

    d: int
    t0: int  # seconds since world start at 00:00 of the day
    date: dt.date
    after_k: bool  # the drift scenario is in force
    idx: np.ndarray  # rows of the active customers
    lvl: np.ndarray = field(default_factory=lambda: np.empty((0, len(P.INTENTS))))  # their intent levels (midnight)
    sig_today: np.ndarray = field(default_factory=lambda: np.empty((0, len(P.SIGNALS)), dtype=np.int64))
    fired_row: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # (row in idx, signal) pairs
    fired_sig: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    payday: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # positions in idx paid today
    live: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # positions with a live intent

    @property
    def m(self) -> int:
        return len(self.idx)

    @property
    def day_end(self) -> int:
        return self.t0 + P.DAY_END_SECOND


@dataclass
class _Contacts:
    """Today's contacts, one row each, as the logging policy decided them (before their outcomes)."""

    rows: np.ndarray  # customer rows
    pos: np.ndarray  # positions in the day's active customers (`_Today.idx`)
    sec: np.ndarray  # second of the day of the decision
    trig: np.ndarray  # bool: triggered by a signal (else scheduled)
    trigger: np.ndarray  # the triggering signal, -1 when scheduled
    action: np.ndarray
    channel: np.ndarray
    propensity: np.ndarray
    n_eligible: np.ndarray

    @property
    def n(self) -> int:
        return len(self.rows)


class _ChunkSimulation:
    """One chunk of customers lived through the world, one method per stage of the day (see module docstring).

    The stages draw from the chunk's RNG in a fixed order; that order, like the physics, defines the world.
    """

    def __init__(
        self, config: SimulationConfig, table: ActionTable, pop: Population, rng: np.random.Generator, chunk: int
    ) -> None:
        self.config, self.table, self.pop, self.rng, self.chunk = config, table, pop, rng, chunk
        n = self.n = pop.n
        self.ch_index = {c: i for i, c in enumerate(table.channels)}
        self.k = config.scenario_start_day if config.scenario is not None else None
        self.fee_change = config.scenario == "fee_change"
        self.rate_shock = config.scenario == "rate_shock"
        self.policy = LoggingPolicy(table)
        self.consent_col_of_channel = np.array(
            [P.CONSENT_COLUMNS.index(P.CHANNEL_CONSENT[c]) if P.CHANNEL_CONSENT.get(c) else -1 for c in table.channels]
        )
        self.half_life = np.array([P.INTENT_HALF_LIFE_DAYS[k] for k in P.INTENTS])
        self.intent_decay = 0.5 ** (1.0 / self.half_life)

        # ---- mutable state of every customer
        self.held = pop.held.copy()
        self.n_held = self.held.sum(axis=1).astype(np.float64)
        self.credit_score = pop.credit_score.copy()
        self.consent = pop.consent.copy()
        self.closed = np.zeros(n, dtype=bool)
        self.close_day = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        self.intent_level = np.zeros((n, len(P.INTENTS)))
        self.last_sig = np.full((n, len(P.SIGNALS)), NEVER, dtype=np.int64)
        self.fat_c = np.zeros(n)  # decayed count of contacts on earlier days
        self.fat_d = np.zeros(n)  # decayed count of dismissals on earlier days
        self.contacts_prev = np.zeros(n)
        self.dismiss_prev = np.zeros(n)
        self.retention_mem = np.zeros(n)
        self.service_mem = np.zeros(n)
        self.fee_mem = np.zeros(n)
        self.abroad_until = np.full(n, -1, dtype=np.int64)
        self.trip_country = np.zeros(n, dtype=np.int64)
        self.age = np.zeros(n)
        self.rate_year = -1
        self.static_rate = np.zeros((n, len(P.INTENTS)))
        self.static_total = np.zeros(n)

        # balances
        held = self.held
        self.cur = np.round(pop.income * rng.uniform(0.3, 1.6, n), 2)
        self.sav = np.where(held[:, _PR["savings"]], np.round(rng.lognormal(np.log(6_000), 0.9, n), 2), 0.0)
        self.sav += np.where(held[:, _PR["term_deposit"]], np.round(rng.lognormal(np.log(15_000), 0.6, n), 2), 0.0)
        self.card = np.where(held[:, _PR["credit_card"]] | held[:, _PR["travel_card"]], rng.uniform(0, 1_500, n), 0.0)
        amounts = np.zeros((n, len(PRODUCTS)))
        sh = pop.start_holdings
        np.add.at(amounts, (sh["row"], sh["product"]), sh["amount"])
        self.loan = (
            amounts[:, _PR["personal_loan"]] + amounts[:, _PR["car_loan"]] + amounts[:, _PR["business_loan"]]
        ) * rng.uniform(0.2, 0.95, n)
        self.mort = amounts[:, _PR["mortgage"]] * rng.uniform(0.2, 0.95, n)
        self.inv = amounts[:, _PR["investments"]] * rng.lognormal(0.0, 0.3, n)
        self.bal_ref = self.cur + self.sav
        self.save_rate = rng.uniform(0.0, 0.15, n)

        # ---- outputs
        self.t_hold, self.t_bal, self.t_tx = _Columns(), _Columns(), _Columns()
        self.t_dig, self.t_sig, self.t_con, self.t_clo = _Columns(), _Columns(), _Columns(), _Columns()
        self.t_int, self.t_haz, self.t_ct = _Columns(), _Columns(), _Columns()
        self.profile_changes = _Columns()
        self.snap_rows: list[np.ndarray] = []
        self.snap_days: list[np.ndarray] = []
        self.snap_h: list[np.ndarray] = []
        self.acc_p: list[np.ndarray] = []
        self.acc_y: list[np.ndarray] = []
        self.tx_seq = 0
        self.contact_seq = 0

    # ------------------------------------------------------------------ the day loop
    def run(self, on_day: Callable[[int], None] | None = None) -> ChunkResult:
        for d in range(self.config.days):
            date = self.config.start_date + dt.timedelta(days=d)
            t0 = d * DAY
            idx = np.nonzero((self.pop.signup_s < t0) & ~self.closed)[0]
            day = _Today(d=d, t0=t0, date=date, after_k=self.k is not None and d >= self.k, idx=idx)
            if date.year != self.rate_year:
                self.age = (date.year - self.pop.birth_year).astype(np.float64)
            self._life_events(day)
            self._signals(day)
            self._money(day)
            self._digital(day)
            self._contacts(day)
            self._organic_uptake(day)
            churned = self._churn(day)
            self._statements(day, churned)
            fr, fj = np.nonzero(day.sig_today >= 0)
            self.last_sig[idx[fr], fj] = t0 + day.sig_today[fr, fj]
            if on_day is not None:
                on_day(d)
        return self._result()

    def _life_events(self, day: _Today) -> None:
        """1. Memories decay; new life events / intents arrive at midnight (at most one per customer-day)."""
        pop, rng, idx, m, t0 = self.pop, self.rng, day.idx, day.m, day.t0
        self.intent_level *= self.intent_decay
        self.fat_c = (self.fat_c + self.contacts_prev) * decay(P.FATIGUE_CONTACT_TAU_DAYS)
        self.fat_d = (self.fat_d + self.dismiss_prev) * decay(P.FATIGUE_DISMISS_TAU_DAYS)
        self.contacts_prev = np.zeros(self.n)
        self.dismiss_prev = np.zeros(self.n)
        self.retention_mem *= decay(P.CHURN_RETENTION_TAU_DAYS)
        self.service_mem *= decay(P.CHURN_SERVICE_TAU_DAYS)
        self.fee_mem *= decay(P.CHURN_FEE_TAU_DAYS)
        if day.date.year != self.rate_year:
            self.rate_year = day.date.year
            self.static_rate = _static_intent_rates(self.age, pop)
            self.static_total = self.static_rate.sum(axis=1)
        # dynamic rates: distress follows the credit score, switching follows complaints (and fees, in fee_change)
        complaint_recent = np.exp(-(t0 - self.last_sig[idx, _S["complaint"]]) / (14 * DAY))
        distress = np.array([0.5, 1.0, 3.0])[risk_band(self.credit_score[idx])] * np.where(
            pop.income[idx] < 2_000, 1.5, 1.0
        )
        fee_push = 1.0 + (
            6.0 * self.fee_mem[idx] * pop.price_sensitivity[idx] if self.fee_change and day.after_k else 0.0
        )
        switching = pop.price_sensitivity[idx] * (1.0 + 40.0 * complaint_recent) * fee_push
        distress *= P.INTENT_BASE_RATE["financial_distress"]
        switching *= P.INTENT_BASE_RATE["switching"]
        total = self.static_total[idx] + distress + switching
        ar = np.nonzero(rng.random(m) < -np.expm1(-total))[0]
        if len(ar):
            rates = self.static_rate[idx[ar]]
            rates[:, _I["financial_distress"]] = distress[ar]
            rates[:, _I["switching"]] = switching[ar]
            ak = _choice_rows(rng, rates)
            rows = idx[ar]
            s = rng.uniform(0.4, 1.0, len(ar))
            self.intent_level[rows, ak] += s
            self.t_int.add(
                row=rows, intent=ak, start_s=np.full(len(ar), t0, dtype=np.int64), strength=s, half=self.half_life[ak]
            )
            # a strong financial shock shows up in the credit score the same day
            hit = (ak == _I["financial_distress"]) & (s > 0.6)
            if hit.any():
                hr = rows[hit]
                self.credit_score[hr] = np.maximum(300, self.credit_score[hr] - rng.integers(30, 110, len(hr)))
                self.profile_changes.add(
                    row=hr,
                    valid_from=np.full(len(hr), t0, dtype=np.int64),
                    credit=self.credit_score[hr],
                    consent=self.consent[hr],
                )
        day.lvl = self.intent_level[idx]

    def _signals(self, day: _Today) -> None:
        """2a. Real-time context signals, driven by intents, each with its second of the day; pay day salary."""
        pop, rng, idx, m = self.pop, self.rng, day.idx, day.m
        sig_today = np.full((m, len(P.SIGNALS)), -1, dtype=np.int64)
        p_sig = _SIG_BASE + _SIG_GAIN * np.minimum(day.lvl[:, _SIG_DRIVER], 1.5)
        if self.fee_change and day.after_k:
            p_sig[:, _S["complaint"]] += 0.0015 * pop.price_sensitivity[idx]
        fire = rng.random((m, len(P.SIGNALS))) < p_sig
        fire[:, _S["airport_checkin"]] &= self.abroad_until[idx] < day.d  # no new check-in while still abroad
        k, kj = np.nonzero(fire)
        if len(k):
            span = _SIG_HOUR_SPAN[kj] * 3600
            sig_today[k, kj] = _SIG_HOUR_LO[kj] * 3600 + np.floor(rng.random(len(k)) * span).astype(np.int64)
        pk = np.nonzero(pop.payday[idx] == day.date.day)[0]
        sig_today[pk, _S["salary_credit"]] = rng.integers(6 * 3600, 7 * 3600, len(pk))
        fr, fj = np.nonzero(sig_today >= 0)
        if len(fr):
            self.t_sig.add(row=idx[fr], ts=day.t0 + sig_today[fr, fj], signal=fj)
        # trips start at the airport check-in
        trip = np.nonzero(sig_today[:, _S["airport_checkin"]] >= 0)[0]
        if len(trip):
            self.abroad_until[idx[trip]] = day.d + rng.integers(2, 10, len(trip))
            self.trip_country[idx[trip]] = rng.integers(1, len(COUNTRIES), len(trip))
        day.sig_today, day.fired_row, day.fired_sig, day.payday = sig_today, fr, fj, pk

    def _money(self, day: _Today) -> None:
        """2b. Transactions and balances: salary and pay-day debits, fees, competitor transfers, spending."""
        # in this order: each stage draws from the RNG, and the transactions keep the stages' order
        tx = [
            self._payday_money(day),
            self._fees(day),
            self._competitor_transfers(day),
            self._transfers_in(day),
            self._spending(day),
        ]
        self._log_transactions([t for t in tx if t is not None])
        self.inv[day.idx] *= 1.0 + self.rng.normal(0.0002, 0.008, day.m)

    def _payday_money(self, day: _Today) -> _Tx | None:
        """Salary in on pay day; the card bill, the savings standing order and loan instalments go out."""
        pop, held, cur, sav, card = self.pop, self.held, self.cur, self.sav, self.card
        pk = day.payday
        if not len(pk):
            return None
        r = day.idx[pk]
        salary = _transfer_rows(r, day.t0 + day.sig_today[pk, _S["salary_credit"]], pop.income[r], 1, "salary")
        cur[r] += pop.income[r]
        pay = np.minimum(card[r], np.maximum(cur[r], 0))
        card[r] -= pay
        cur[r] -= pay
        srate = self.save_rate[r] * (1.6 if self.rate_shock and day.after_k else 1.0)
        to_sav = np.where(held[r, _PR["savings"]] | held[r, _PR["term_deposit"]], srate * pop.income[r], 0.0)
        sav[r] += to_sav
        cur[r] -= to_sav
        loan_inst = np.minimum(self.loan[r], self.loan[r] / 36 + 1)
        mort_inst = np.minimum(self.mort[r], self.mort[r] / 240 + 1)
        self.loan[r] -= loan_inst
        self.mort[r] -= mort_inst
        cur[r] -= loan_inst + mort_inst
        return salary

    def _fees(self, day: _Today) -> _Tx | None:
        """Monthly account fee on the 1st, overdraft fees when overdrawn."""
        pop, rng, idx, m, cur = self.pop, self.rng, day.idx, day.m, self.cur
        fee_mult = P.FEE_CHANGE_MULTIPLIER if self.fee_change and day.after_k else 1.0
        fee_amt = np.zeros(m)
        if day.date.day == 1:
            fee_amt += np.array([4.5, 0.0, 12.0])[pop.segment[idx]] * fee_mult
        overdrawn = (cur[idx] < 0) & (rng.random(m) < 0.25)
        fee_amt += np.where(overdrawn, 12.0 * fee_mult, 0.0)
        fk = np.nonzero(fee_amt > 0)[0]
        if not len(fk):
            return None
        r = idx[fk]
        fees = _transfer_rows(r, day.t0 + rng.integers(2 * 3600, 5 * 3600, len(r)), np.round(fee_amt[fk], 2), 0, "fees")
        cur[r] -= fee_amt[fk]
        self.fee_mem[r] += fee_amt[fk] / 10.0
        return fees

    def _competitor_transfers(self, day: _Today) -> _Tx | None:
        """Competitor transfers: money leaving for another bank, on the day of the signal."""
        rng, cur, sav = self.rng, self.cur, self.sav
        ck = np.nonzero(day.sig_today[:, _S["competitor_transfer"]] >= 0)[0]
        if not len(ck):
            return None
        r = day.idx[ck]
        amt = np.round(np.maximum(cur[r], 0) * rng.uniform(0.3, 0.7, len(r)) + sav[r] * rng.uniform(0, 0.4, len(r)), 2)
        amt = np.maximum(amt, 50.0)
        out = _transfer_rows(r, day.t0 + day.sig_today[ck, _S["competitor_transfer"]], amt, 0, "competitor_transfer")
        from_sav = np.minimum(sav[r], amt * 0.5)
        sav[r] -= from_sav
        cur[r] -= amt - from_sav
        return out

    def _transfers_in(self, day: _Today) -> _Tx | None:
        """Incoming transfers."""
        rng = self.rng
        tin = np.nonzero(rng.random(day.m) < 0.03)[0]
        if not len(tin):
            return None
        r = day.idx[tin]
        amt = np.round(rng.lognormal(np.log(200), 1.0, len(r)), 2)
        incoming = _transfer_rows(r, day.t0 + rng.integers(7 * 3600, 22 * 3600, len(r)), amt, 1, "transfer_in")
        self.cur[r] += amt
        return incoming

    def _spending(self, day: _Today) -> _Tx | None:
        """Everyday spending, the mix shifted by intents and trips; card purchases go on the card balance."""
        pop, rng, idx, m, held, cur, card = self.pop, self.rng, day.idx, day.m, self.held, self.cur, self.card
        abroad = self.abroad_until[idx] >= day.d
        cnt = rng.poisson(0.75 * pop.spend_level[idx] * np.where(abroad, 1.6, 1.0))
        sp = np.repeat(np.arange(m), cnt)
        if not len(sp):
            return None
        pick = np.minimum(np.searchsorted(_SPEND_CUM, rng.random(len(sp))), len(_SPEND_W) - 1)
        ab = abroad[sp]
        shifted = day.lvl[:, _SPEND_INTENTS].max(axis=1) > 0.02
        special = np.nonzero(ab | shifted[sp])[0]
        if len(special):
            ss = sp[special]
            w = np.repeat(_SPEND_W[None, :], len(ss), axis=0)
            for intent, (col, g) in _INTENT_SPEND.items():
                w[:, col] += g * np.minimum(day.lvl[ss, _I[intent]], 1.5)
            w[ab[special], 1] += 0.25
            w[ab[special], 2] += 0.1
            pick[special] = _choice_rows(rng, w)
        r = idx[sp]
        # spending scales with income (so a typical customer lives within it) and with the spending habit
        scale = np.sqrt(pop.spend_level[r]) * np.power(pop.income[r] / 3_000.0, 0.8)
        amt = np.maximum(np.round(_SPEND_MED[pick] * rng.lognormal(0.0, 0.6, len(sp)) * scale, 2), 0.5)
        chn = _SPEND_CH[pick]
        cty = np.where(ab & (chn != 1) & (chn != 3), self.trip_country[r], 0)
        ts = day.t0 + rng.integers(7 * 3600, 23 * 3600, len(sp))
        spent = (r, ts, amt, np.zeros(len(sp), np.int64), _SPEND_CAT[pick], chn, cty)
        has_card = held[r, _PR["credit_card"]] | held[r, _PR["travel_card"]]
        on_card = has_card & (chn <= 1) & (rng.random(len(sp)) < 0.6)
        card += np.bincount(r[on_card], weights=amt[on_card], minlength=self.n)
        cur -= np.bincount(r[~on_card], weights=amt[~on_card], minlength=self.n)
        return spent

    def _log_transactions(self, tx: list[_Tx]) -> None:
        """Append the day's transactions (in the order the stages made them) with fresh transaction ids."""
        if not tx:
            return
        rows, ts, amount, direction, category, channel, country = (np.concatenate(c) for c in zip(*tx, strict=True))
        nt = len(rows)
        self.t_tx.add(
            transaction_id=self.chunk * 10_000_000_000 + self.tx_seq + np.arange(1, nt + 1, dtype=np.int64),
            row=rows,
            ts=ts,
            amount=amount,
            direction=direction,
            category=category,
            channel=channel,
            country=country,
        )
        self.tx_seq += nt

    def _digital(self, day: _Today) -> None:
        """2c. App / web events: logins, general page views, and the pages a live intent sends customers to."""
        pop, rng, idx, m = self.pop, self.rng, day.idx, day.m
        eng = pop.engagement[idx]
        n_login = rng.poisson(0.6 * eng)
        lr = np.repeat(np.arange(m), n_login)
        pv_r, pv_pg = [], []
        gen = np.nonzero(rng.random(m) < 0.12 * eng)[0]
        if len(gen):
            gp = rng.choice(
                [_PG[x] for x in ("cards", "savings_rates", "investments", "insurance", "help", "fees")], len(gen)
            )
            gp = np.where((pop.segment[idx][gen] == SEG_SB) & (rng.random(len(gen)) < 0.5), _PG["business"], gp)
            pv_r.append(gen)
            pv_pg.append(gp)
        live = np.nonzero(day.lvl.max(axis=1) > 0.005)[0]
        lvl_live = day.lvl[live]
        pscale = 0.3 + eng[live]
        for page, terms in _INTENT_PAGES:
            p = sum(g * np.minimum(lvl_live[:, _I[k]], 1.5) for k, g in terms) * pscale
            hit = live[rng.random(len(live)) < p]
            if len(hit):
                pv_r.append(hit)
                pv_pg.append(np.full(len(hit), _PG[page]))
        # drift: rates and fees send everyone (by engagement) to the rates / fees pages
        if day.after_k and (self.rate_shock or self.fee_change):
            page = "savings_rates" if self.rate_shock else "fees"
            p = 0.03 * eng if self.rate_shock else 0.02 * eng * pop.price_sensitivity[idx]
            hit = np.nonzero(rng.random(m) < p)[0]
            pv_r.append(hit)
            pv_pg.append(np.full(len(hit), _PG[page]))
        if len(lr) or pv_r:
            pr = np.concatenate(pv_r) if pv_r else np.empty(0, np.int64)
            pg = np.concatenate(pv_pg) if pv_pg else np.empty(0, np.int64)
            rows = np.concatenate([lr, pr])
            app_share = np.where(pop.digital_first[idx[rows]], 0.85, 0.45)
            self.t_dig.add(
                row=idx[rows],
                ts=day.t0 + rng.integers(6 * 3600, 23 * 3600, len(rows)),
                channel=(rng.random(len(rows)) >= app_share).astype(np.int64),  # 0 app, 1 web
                event_type=np.concatenate([np.zeros(len(lr), np.int64), np.ones(len(pr), np.int64)]),
                page=np.concatenate([np.full(len(lr), -1, np.int64), pg]),
            )
        day.live = live

    def _contacts(self, day: _Today) -> None:
        """3. The logging policy decides (on a signal, or scheduled); outcomes are drawn from the true p_accept."""
        trig_sig, trig_ts = self._triggers(day)
        c = self._decide_contacts(day, trig_sig, trig_ts)
        if c is None:
            return
        p_acc = accept_probability(self.table, self._accept_state(day, c.rows, c.pos, c.sec, c.action, c.channel))
        accepted, dismissed, out_ts = self._outcomes(day, c, p_acc)
        self._log_contacts(day, c, p_acc, accepted, dismissed, out_ts)
        self._contact_effects(c, accepted, dismissed, out_ts)

    def _triggers(self, day: _Today) -> tuple[np.ndarray, np.ndarray]:
        """Per active customer, the earliest of today's signals that triggers a decision: (signal or -1, second)."""
        fr, fj, sig_today = day.fired_row, day.fired_sig, day.sig_today
        trig_sig = np.full(day.m, -1, dtype=np.int64)
        trig_ts = np.full(day.m, np.iinfo(np.int64).max, dtype=np.int64)
        cand = self.rng.random(len(fr)) < _TRIGGER_P[fj]
        if cand.any():
            cr, cj = fr[cand], fj[cand]
            cts = sig_today[cr, cj]
            o = np.lexsort((cj, cts, cr))  # per customer, the earliest triggering signal wins
            sel = o[np.unique(cr[o], return_index=True)[1]]
            trig_sig[cr[sel]] = cj[sel]
            trig_ts[cr[sel]] = cts[sel]
        return trig_sig, trig_ts

    def _decide_contacts(self, day: _Today, trig_sig: np.ndarray, trig_ts: np.ndarray) -> _Contacts | None:
        """Triggered and scheduled decisions; the logging policy picks action and channel (None: no contact today)."""
        pop, rng, table, m = self.pop, self.rng, self.table, day.m
        is_trig = trig_sig >= 0
        is_sched = ~is_trig & (rng.random(m) < P.SCHEDULED_CONTACT_RATE)
        dec = np.nonzero(is_trig | is_sched)[0]
        if not len(dec):
            return None
        rows = day.idx[dec]
        trig = is_trig[dec]
        sec = np.where(
            trig, trig_ts[dec] + rng.integers(60, 1800, len(dec)), rng.integers(8 * 3600, 20 * 3600, len(dec))
        )
        base_ok = table.eligible(self.age[rows], pop.segment[rows], risk_band(self.credit_score[rows]), self.held[rows])
        base_ok &= ~(table.credit[None, :] & pop.vulnerable[rows][:, None])  # no credit offers to the vulnerable
        cons = np.concatenate([self.consent[rows], np.ones((len(rows), 1), dtype=bool)], axis=1)
        ch_consent = cons[:, self.consent_col_of_channel]  # -1 picks the all-true column (no consent needed)
        choice = self.policy.decide(
            rng,
            base_ok,
            ch_consent,
            pop.preferred_channel[rows],
            pop.segment[rows],
            np.where(trig, trig_sig[dec], -1),
            np.where(trig, P.EPSILON_TRIGGERED, P.EPSILON_SCHEDULED),
        )
        ok = choice.action >= 0
        if not ok.any():
            return None
        trig = trig[ok]
        return _Contacts(
            rows=rows[ok],
            pos=dec[ok],
            sec=sec[ok],
            trig=trig,
            trigger=np.where(trig, trig_sig[dec][ok], -1),
            action=choice.action[ok],
            channel=choice.channel[ok],
            propensity=choice.propensity[ok],
            n_eligible=choice.n_eligible[ok],
        )

    def _outcomes(self, day: _Today, c: _Contacts, p_acc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Accepted (from the true p_accept), else dismissed or ignored, and when: (accepted, dismissed, outcome_ts)."""
        rng, nc = self.rng, c.n
        accepted = rng.random(nc) < p_acc
        interactive = np.isin(c.channel, [self.ch_index[ch] for ch in _INTERACTIVE if ch in self.ch_index])
        dismissed = ~accepted & (rng.random(nc) < np.where(interactive, 0.5, 0.15))
        lag = np.where(
            accepted,
            np.minimum(rng.lognormal(np.log(1200), 1.0, nc), 3 * 3600),
            np.where(dismissed, rng.uniform(5, 600, nc), 4 * 3600),
        ).astype(np.int64)
        out_ts = np.minimum(day.t0 + c.sec + lag, day.day_end)
        return accepted, dismissed, out_ts

    def _log_contacts(
        self,
        day: _Today,
        c: _Contacts,
        p_acc: np.ndarray,
        accepted: np.ndarray,
        dismissed: np.ndarray,
        out_ts: np.ndarray,
    ) -> None:
        """Contact rows (with fresh contact ids), their true p_accept, and today's contact and dismissal counts."""
        nc = c.n
        outcome = np.where(accepted, 0, np.where(dismissed, 1, 2))
        cids = self.chunk * 1_000_000_000 + self.contact_seq + np.arange(1, nc + 1, dtype=np.int64)
        self.contact_seq += nc
        scheduled_loc = np.where(c.channel == self.ch_index.get("atm", -9), _LOC["other"], _LOC["home"])
        self.t_con.add(
            contact_id=cids,
            row=c.rows,
            ts=day.t0 + c.sec,
            action=c.action,
            channel=c.channel,
            trigger=c.trigger,
            location=np.where(c.trig, _SIG_LOC[np.maximum(c.trigger, 0)], scheduled_loc),
            hour=(c.sec // 3600).astype(np.int64),
            propensity=c.propensity,
            n_eligible=c.n_eligible,
            outcome=outcome,
            outcome_ts=out_ts,
        )
        self.t_ct.add(contact_id=cids, p_accept=p_acc)
        self.acc_p.append(p_acc)
        self.acc_y.append(accepted)
        self.contacts_prev[c.rows] += 1
        self.dismiss_prev[c.rows] += dismissed

    def _contact_effects(self, c: _Contacts, accepted: np.ndarray, dismissed: np.ndarray, out_ts: np.ndarray) -> None:
        """Accepted sales open the product, retention and service offers are remembered; dismissals may opt out."""
        rng, table, rows = self.rng, self.table, c.rows
        prod = table.product[c.action]
        kind = table.kind[c.action]
        sale = accepted & (prod >= 0)
        if sale.any():
            sr, sp = rows[sale], prod[sale]
            med = _PRODUCT_AMOUNT[sp]
            amt = np.where(med > 0, np.round(med * rng.lognormal(0.0, 0.5, len(sr)), 2), 0.0)
            self._open(sr, sp, out_ts[sale], amt)
        self.retention_mem[rows[accepted & (kind == "retention")]] += 1.0
        self.service_mem[rows[accepted & (kind == "service")]] += 1.0
        # a dismissal sometimes ends in an opt-out of that channel
        cc = self.consent_col_of_channel[c.channel]
        opt = dismissed & (cc >= 0) & (rng.random(c.n) < P.OPT_OUT_AFTER_DISMISS)
        if opt.any():
            orow = rows[opt]
            self.consent[orow, cc[opt]] = False
            self.profile_changes.add(
                row=orow, valid_from=out_ts[opt], credit=self.credit_score[orow], consent=self.consent[orow]
            )

    def _accept_state(
        self, day: _Today, rows: np.ndarray, pos: np.ndarray, sec: np.ndarray, act: np.ndarray, chn: np.ndarray
    ) -> AcceptState:
        """Each contacted customer's true state at the decision second (what `TrueWorld` rebuilds from the tables)."""
        pop, nc = self.pop, len(rows)
        ts = day.t0 + sec
        level = self.intent_level[rows] * np.power(0.5, (sec[:, None] / DAY) / self.half_life[None, :])
        today = day.sig_today[pos]
        seen_today = (today >= 0) & (today <= sec[:, None])
        last = np.where(seen_today, day.t0 + today, self.last_sig[rows])
        age_h = (ts[:, None] - last) / 3600.0
        prod = self.table.product[act]
        return AcceptState(
            action=act,
            channel=chn,
            segment=pop.segment[rows],
            age=self.age[rows],
            income=pop.income[rows],
            affinity=np.where(prod >= 0, pop.affinity[rows, np.maximum(prod, 0)], 0.0),
            price_sensitivity=pop.price_sensitivity[rows],
            fatigue_sensitivity=pop.fatigue_sensitivity[rows],
            channel_affinity=pop.channel_affinity[rows, chn],
            intent_level=level,
            signal_age_hours=np.where(last <= NEVER, np.inf, age_h),
            fatigue_contacts=self.fat_c[rows],
            fatigue_dismissals=self.fat_d[rows],
            drift=drift_shift(self.table, act, self.config.scenario, bool(self.rate_shock and day.after_k)),
            noise=hash_noise(self.config.seed, pop.customer_id[rows], act, np.full(nc, day.d)),
        )

    def _organic_uptake(self, day: _Today) -> None:
        """4. Products taken up without any offer, late in the evening, driven by intents."""
        rng = self.rng
        li = day.idx[day.live]
        for prod_name, terms in P.ORGANIC_UPTAKE.items():
            j = _PR[prod_name]
            p = sum(g * np.minimum(self.intent_level[li, _I[k]], 1.5) for k, g in terms.items())
            can = ~self.held[li, j] & (self.age[li] >= 18)
            if prod_name in ("mortgage", "personal_loan", "car_loan"):
                can &= risk_band(self.credit_score[li]) <= 1
            hit = np.nonzero(can & (rng.random(len(li)) < p))[0]
            if len(hit):
                r = li[hit]
                amt = np.round(P.PRODUCT_AMOUNT[prod_name] * rng.lognormal(0.0, 0.5, len(r)), 2)
                opened = day.t0 + rng.integers(23 * 3600, 23 * 3600 + 3540, len(r))
                self._open(r, np.full(len(r), j), opened, amt)

    def _open(self, rows: np.ndarray, prods: np.ndarray, opened_s: np.ndarray, amount: np.ndarray) -> None:
        """A product opens: holding row, and balances move (a loan pays out, deposits move money in)."""
        self.held[rows, prods] = True
        self.n_held[rows] += 1
        self.t_hold.add(row=rows, product=prods, opened_s=opened_s, amount=amount)
        _apply_new_product(rows, prods, amount, self.sav, self.loan, self.mort, self.inv, self.cur)

    def _churn(self, day: _Today) -> np.ndarray:
        """5. The true daily churn hazard; closures at 23:59:59. Returns who closed (positions in idx)."""
        pop, rng, idx, m, d = self.pop, self.rng, day.idx, day.m, day.d
        tenure_years = (day.t0 - pop.signup_s[idx]) / (365.25 * DAY)
        bal_now = self.cur[idx] + self.sav[idx]
        self.bal_ref[idx] += (bal_now - self.bal_ref[idx]) / 60.0
        drop = np.clip(1.0 - bal_now / np.maximum(self.bal_ref[idx], 200.0), 0.0, 1.0)
        day_end = day.day_end
        comp_rec = np.exp(-(day_end - self._last_signal(day, "complaint")) / (P.CHURN_COMPLAINT_TAU_DAYS * DAY))
        ctr_rec = np.exp(-(day_end - self._last_signal(day, "competitor_transfer")) / (14 * DAY))
        switch_term = P.CHURN_SWITCHING_GAIN * np.minimum(self.intent_level[idx, _I["switching"]], 1.5)
        fee_term = P.CHURN_FEE_GAIN * np.minimum(self.fee_mem[idx], 3.0) * pop.price_sensitivity[idx]
        if self.fee_change and day.after_k:
            fee_term = fee_term + P.FEE_CHANGE_CHURN_GAIN * pop.price_sensitivity[idx]
        logit = (
            P.CHURN_BASE_LOGIT
            + pop.churn_propensity[idx]
            + switch_term
            + P.CHURN_COMPLAINT_GAIN * comp_rec
            + P.CHURN_COMPETITOR_GAIN * ctr_rec
            + fee_term
            + P.CHURN_BALANCE_DROP_GAIN * drop
            + P.CHURN_NEW_CUSTOMER_GAIN * np.exp(-tenure_years / 1.5)
            + P.CHURN_PRODUCTS_GAIN * self.n_held[idx]
            + P.CHURN_RETENTION_GAIN * self.retention_mem[idx]
            + P.CHURN_SERVICE_GAIN * self.service_mem[idx]
        )
        hazard = sigmoid(logit)
        if d % self.config.effective_hazard_cadence == 0:
            self.t_haz.add(row=idx, day=np.full(m, d, dtype=np.int64), hazard=hazard)
        if d % 7 == 0:
            self.snap_rows.append(idx)
            self.snap_days.append(np.full(m, d, dtype=np.int64))
            self.snap_h.append(hazard)
        churn = rng.random(m) < hazard
        ci = np.nonzero(churn)[0]
        if len(ci):
            r = idx[ci]
            self.closed[r] = True
            self.close_day[r] = d
            # the reason is the driver that pushed hardest (competitor, fees, service), else moved / other
            contrib = np.stack(
                [
                    switch_term[ci] + P.CHURN_COMPETITOR_GAIN * ctr_rec[ci],
                    fee_term[ci],
                    P.CHURN_COMPLAINT_GAIN * comp_rec[ci],
                    np.full(len(ci), 0.7),
                ],
                axis=1,
            )
            reason = np.argmax(contrib + rng.gumbel(0, 0.3, contrib.shape), axis=1)
            reason = np.where(reason == 3, np.where(rng.random(len(ci)) < 0.6, 3, 4), reason)
            self.t_clo.add(row=r, ts=np.full(len(r), day_end, dtype=np.int64), reason=reason)
        return churn

    def _last_signal(self, day: _Today, name: str) -> np.ndarray:
        """Time of the latest signal `name` up to the end of today (today's, if any, else the previous one)."""
        j = _S[name]
        today = day.sig_today[:, j]
        return np.where(today >= 0, day.t0 + today, self.last_sig[day.idx, j]).astype(np.float64)

    def _statements(self, day: _Today, churned: np.ndarray) -> None:
        """End-of-day balances on statement days, for customers still with the bank."""
        if (day.d + 1) % self.config.statement_cadence_days != 0:
            return
        st = day.idx[~churned]
        self.t_bal.add(
            row=st,
            as_of=np.full(len(st), day.day_end, dtype=np.int64),
            current=np.round(self.cur[st], 2),
            savings=np.round(self.sav[st], 2),
            card=np.round(self.card[st], 2),
            loan=np.round(self.loan[st], 2),
            mortgage=np.round(self.mort[st], 2),
            investment=np.round(self.inv[st], 2),
        )

    # ------------------------------------------------------------------ output
    def _result(self) -> ChunkResult:
        i64, f64, b = np.dtype(np.int64), np.dtype(np.float64), np.dtype(bool)
        pop = self.pop
        tables: dict[str, dict[str, np.ndarray]] = {}
        tables["profile_changes"] = self.profile_changes.result(
            {"row": i64, "valid_from": i64, "credit": i64, "consent": b}
        )
        tables["start_state"] = {"credit": pop.credit_score, "consent": pop.consent}
        holdings = self.t_hold.result({"row": i64, "product": i64, "opened_s": i64, "amount": f64})
        tables["holdings"] = {k: np.concatenate([pop.start_holdings[k], v]) for k, v in holdings.items()}
        balance_cols = ("current", "savings", "card", "loan", "mortgage", "investment")
        tables["balances"] = self.t_bal.result({"row": i64, "as_of": i64, **dict.fromkeys(balance_cols, f64)})
        tables["transactions"] = self.t_tx.result(
            {
                "transaction_id": i64,
                "row": i64,
                "ts": i64,
                "amount": f64,
                **dict.fromkeys(("direction", "category", "channel", "country"), i64),
            }
        )
        tables["digital_events"] = self.t_dig.result(dict.fromkeys(("row", "ts", "channel", "event_type", "page"), i64))
        tables["context_signals"] = self.t_sig.result(dict.fromkeys(("row", "ts", "signal"), i64))
        contact_int = ("contact_id", "row", "ts", "action", "channel", "trigger", "location", "hour")
        tables["contacts"] = self.t_con.result(
            {
                **dict.fromkeys(contact_int, i64),
                "propensity": f64,
                "n_eligible": i64,
                "outcome": i64,
                "outcome_ts": i64,
            }
        )
        tables["closures"] = self.t_clo.result(dict.fromkeys(("row", "ts", "reason"), i64))
        tables["intents"] = self.t_int.result({"row": i64, "intent": i64, "start_s": i64, "strength": f64, "half": f64})
        tables["churn_hazard"] = self.t_haz.result({"row": i64, "day": i64, "hazard": f64})
        tables["contact_truth"] = self.t_ct.result({"contact_id": i64, "p_accept": f64})

        result = ChunkResult(tables=tables)
        if self.snap_rows:
            sr = np.concatenate(self.snap_rows)
            sd = np.concatenate(self.snap_days)
            sh = np.concatenate(self.snap_h)
            for horizon in self.config.churn_horizons:
                keep = sd + horizon <= self.config.days
                p_h = 1.0 - np.power(1.0 - sh[keep], horizon)
                cd = self.close_day[sr[keep]]
                label = (cd >= sd[keep]) & (cd < sd[keep] + horizon)
                result.churn_scores[horizon] = (p_h, label)
        if self.acc_p:
            result.accept_scores = (np.concatenate(self.acc_p), np.concatenate(self.acc_y))
        return result


def simulate_chunk(
    config: SimulationConfig,
    table: ActionTable,
    pop: Population,
    rng: np.random.Generator,
    chunk_index: int,
    on_day: Callable[[int], None] | None = None,
) -> ChunkResult:
    """Live `pop` through `config.days` days; returns every table's rows for these customers.

    `on_day(d)` is called after each simulated day (progress reporting).
    """
    return _ChunkSimulation(config, table, pop, rng, chunk_index).run(on_day)


def _apply_new_product(
    rows: np.ndarray,
    prods: np.ndarray,
    amount: np.ndarray,
    sav: np.ndarray,
    loan: np.ndarray,
    mort: np.ndarray,
    inv: np.ndarray,
    cur: np.ndarray,
) -> None:
    """Balances move when a product opens: a loan pays out into the current account, deposits move money in."""
    for name, target in (("personal_loan", loan), ("car_loan", loan), ("business_loan", loan), ("mortgage", mort)):
        k = prods == _PR[name]
        np.add.at(target, rows[k], amount[k])
    k = prods == _PR["personal_loan"]
    np.add.at(cur, rows[k], amount[k])
    for name, target in (("savings", sav), ("term_deposit", sav), ("investments", inv)):
        k = prods == _PR[name]
        moved = np.minimum(np.maximum(cur[rows[k]], 0.0), amount[k])
        np.add.at(target, rows[k], moved)
        np.subtract.at(cur, rows[k], moved)


__all__ = [
    "CLOSURE_REASONS",
    "COUNTRIES",
    "OUTCOMES",
    "PAGES",
    "TX_CATEGORIES",
    "TX_CHANNELS",
    "TX_DIRECTIONS",
    "ChunkResult",
    "simulate_chunk",
]
