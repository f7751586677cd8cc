"""The day loop: one chunk of customers lived through the world's days, vectorized over customers.

Each day, in this order (the order is part of the truth's definition, see `truth.py`):
1. intents decay and new life events arrive (at midnight); financial distress may lower the credit score;
2. context signals fire (driven by intents), salary arrives on pay day, transactions and app/web events happen;
3. the day's decision points (a triggering signal, or a scheduled campaign slot) go to the contact policy, which
   returns an action and channel or nothing per point; outcomes are drawn from the true acceptance probability;
   accepted sales open the product; a contact that is not accepted may end in an opt-out of that channel or a
   complaint, and unwanted outbound contacts build the nuisance memory that raises churn;
4. products are taken up organically (late evening, from intents);
5. the true churn hazard is computed and closures drawn (at 23:59:59); statements are cut on statement days.
Times inside a chunk are int64 seconds since the world start; `writer.py` turns them into UTC timestamps.

Every draw inside the loop is a counter-based uniform keyed by (stream, day, customer id, k) (`streams.py`), so a
customer's life does not depend on what the policy did to anyone else, nor on the order of the draws: common random
numbers for the policy twin. `begin_day` runs stages 1-2 and returns the decision points, `end_day` takes the
policy's decisions and runs stages 3-5; `run` loops both with one policy.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nextbest.catalogue import PRODUCTS
from nextbest.simulator import params as P
from nextbest.simulator import streams as R
from nextbest.simulator.config import SimulationConfig
from nextbest.simulator.policy import ContactPolicy, DecisionPoints, Decisions
from nextbest.simulator.population import SEG_SB, Population, risk_band
from nextbest.simulator.propensity import (
    AcceptState,
    ActionTable,
    accept_probability,
    consequence_probabilities,
    decay,
    drift_shift,
    hash_noise,
    organic_within,
    price_shift,
    sigmoid,
)
from nextbest.simulator.streams import Stream, Streams

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
COMPLAINT_CAUSES: tuple[str, ...] = ("service", "marketing_contact")

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
    # a small business planning an investment reads up on business credit (appended: earlier pages keep their draws)
    ("business", (("business_expansion", 0.15),)),
    ("loan_calculator", (("business_expansion", 0.08),)),
)


def _static_intent_rates(age: np.ndarray, pop: Population) -> np.ndarray:
    """(n, n_intents) daily arrival rates that depend only on who the customer is (and their age this year)."""
    rate = np.zeros((len(age), len(P.INTENTS)))
    rate[:, _I["home_purchase"]] = np.where((age >= 25) & (age <= 45), 2.5, 0.4)
    rate[:, _I["car_purchase"]] = np.where((age >= 20) & (age <= 70), 1.2, 0.3)
    rate[:, _I["travel"]] = pop.travel_propensity
    rate[:, _I["new_child"]] = np.where((age >= 24) & (age <= 42), 4.0, 0.02)
    rate[:, _I["retirement"]] = np.where((age >= 58) & (age <= 67), 8.0, 0.02)
    rate[:, _I["business_expansion"]] = np.where(pop.segment == SEG_SB, 1.0, 0.0)
    return rate * np.array([P.INTENT_BASE_RATE[k] for k in P.INTENTS])[None, :]


class _Columns:
    """Append-only column store for one table: lists of arrays concatenated once at the end of the chunk."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {}
        self._n_parts = 0

    def add(self, **cols: np.ndarray) -> None:
        for k, v in cols.items():
            self._parts.setdefault(k, []).append(np.asarray(v))
        self._n_parts += 1

    def mark(self) -> int:
        """A position to read the rows added after it (`result(names, since=mark)`)."""
        return self._n_parts

    def result(self, names: dict[str, np.dtype], since: int = 0) -> dict[str, np.ndarray]:
        out = {}
        for k, dt_ in names.items():
            parts = self._parts.get(k, [])[since:]
            out[k] = np.concatenate(parts).astype(dt_, copy=False) if parts else np.empty(0, dt_)
        return out


@dataclass
class ChunkResult:
    """All rows one chunk produced (times in seconds since world start) plus the AUC ingredients."""

    tables: dict[str, dict[str, np.ndarray]]
    churn_scores: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # horizon -> (p, label)
    accept_scores: tuple[np.ndarray, np.ndarray] = (np.empty(0), np.empty(0, dtype=bool))


@dataclass
class DayOutcome:
    """What one chunk's day did with the policy's decisions: the delivered contacts (one row each, positions in the
    day's decision points), what followed, and the day's churn hazard of every active customer."""

    point: np.ndarray  # position of each delivered contact in the day's DecisionPoints
    contact_id: np.ndarray
    rows: np.ndarray
    action: np.ndarray
    channel: np.ndarray
    ts: np.ndarray
    p_accept: np.ndarray
    p_organic: np.ndarray
    p_opt_out: np.ndarray  # before the outcome: P(this contact ends in an opt-out)
    p_complaint: np.ndarray  # and in a complaint
    accepted: np.ndarray
    dismissed: np.ndarray
    opted_out: np.ndarray
    complained: np.ndarray
    refused: int  # decisions the world could not deliver (no consent, no template, product already held)
    #: each delivered contact's offered price (NaN: unpriced, or the list price) and the customer's risk band index
    price: np.ndarray = field(default_factory=lambda: np.empty(0))
    risk: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    hazard_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    hazard: np.ndarray = field(default_factory=lambda: np.empty(0))
    closed_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    organic_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    organic_product: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


# one day's transactions from one stage: (rows, ts, amount, direction, category, channel, country)
_Tx = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _transfer_rows(r: np.ndarray, ts: np.ndarray, amt: np.ndarray, direction: int, category: str) -> _Tx:
    """Transaction rows for account transfers (channel `transfer`, home country)."""
    zeros = np.zeros(len(r), np.int64)
    return (r, ts, amt, zeros + direction, zeros + _TC[category], zeros + 3, zeros)


def _within_group_index(counts: np.ndarray) -> np.ndarray:
    """For counts (c0, c1, ...) the index of each repeated item inside its group: 0..c0-1, 0..c1-1, ..."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts


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
    points: DecisionPoints | None = None
    point_pos: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # points' positions in idx

    @property
    def m(self) -> int:
        return len(self.idx)

    @property
    def day_end(self) -> int:
        return self.t0 + P.DAY_END_SECOND


class ChunkSimulation:
    """One chunk of customers lived through the world, one method per stage of the day (see module docstring)."""

    def __init__(
        self,
        config: SimulationConfig,
        table: ActionTable,
        pop: Population,
        rng: np.random.Generator,
        chunk: int,
        scheduled_rate: float = P.SCHEDULED_CONTACT_RATE,
    ) -> None:
        self.config, self.table, self.pop, self.chunk = config, table, pop, chunk
        self.scheduled_rate = scheduled_rate  # P(a customer-day without a trigger is a campaign decision point)
        self.streams = Streams(config.seed)
        self.n = pop.n
        self.ch_index = {c: i for i, c in enumerate(table.channels)}
        self.k = config.scenario_start_day if config.scenario is not None else None
        self.fee_change = config.scenario == "fee_change"
        self.rate_shock = config.scenario == "rate_shock"
        self.consent_col_of_channel = np.array(
            [P.CONSENT_COLUMNS.index(P.CHANNEL_CONSENT[c]) if P.CHANNEL_CONSENT.get(c) else -1 for c in table.channels]
        )
        self.interactive = np.array([c in _INTERACTIVE for c in table.channels])
        self.marketing = np.isin(table.kind, ["sales", "retention"])
        self.half_life = np.array([P.INTENT_HALF_LIFE_DAYS[k] for k in P.INTENTS])
        self.intent_decay = 0.5 ** (1.0 / self.half_life)
        self.d = 0  # the next day to live
        self.today: _Today | None = None
        self._init_state(rng)
        self._init_outputs()

    def _init_state(self, rng: np.random.Generator) -> None:
        """Every customer's mutable state; starting balances from the chunk's generator (before any policy acts)."""
        pop, n = self.pop, self.n
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
        self.nuisance_mem = np.zeros(n)  # decayed count of unwanted outbound marketing contacts
        self.last_hazard = np.zeros(n)  # each customer's true daily churn hazard on the last day lived
        self.fee_mem = np.zeros(n)
        self.abroad_until = np.full(n, -1, dtype=np.int64)
        self.trip_country = np.zeros(n, dtype=np.int64)
        self.age = np.zeros(n)
        self.rate_year = -1
        self.static_rate = np.zeros((n, len(P.INTENTS)))
        self.static_total = np.zeros(n)
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

    def _init_outputs(self) -> None:
        self.t_hold, self.t_bal, self.t_tx = _Columns(), _Columns(), _Columns()
        self.t_dig, self.t_sig, self.t_con, self.t_clo = _Columns(), _Columns(), _Columns(), _Columns()
        self.t_int, self.t_haz, self.t_ct, self.t_cmp = _Columns(), _Columns(), _Columns(), _Columns()
        self.profile_changes = _Columns()
        self.snap_rows: list[np.ndarray] = []
        self.snap_days: list[np.ndarray] = []
        self.snap_h: list[np.ndarray] = []
        self.acc_p: list[np.ndarray] = []
        self.acc_y: list[np.ndarray] = []
        self.tx_seq = 0
        self.contact_seq = 0

    def u(
        self, stream: Stream, rows: np.ndarray, k: np.ndarray | int | None = None, width: int | None = None
    ) -> np.ndarray:
        """Today's uniforms of `stream` for the customers at `rows` (see `streams.Streams.uniform`)."""
        return self.streams.uniform(stream, self.d, self.pop.customer_id[rows], k=k, width=width)

    # ------------------------------------------------------------------ the day loop
    def run(self, policy: ContactPolicy, on_day: Callable[[int], None] | None = None) -> ChunkResult:
        """Live every day of the config with one policy; every table's rows for these customers."""
        while self.d < self.config.days:
            points = self.begin_day()
            self.end_day(policy.decide(points))
            if on_day is not None:
                on_day(self.d - 1)
        return self.result()

    def begin_day(self) -> DecisionPoints:
        """Stages 1-2 of the next day (life events, signals, money, digital); returns the day's decision points."""
        d = self.d
        if d >= self.config.days:
            raise RuntimeError(f"the world has {self.config.days} days; day {d} is past its end")
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
        self._decision_points(day)
        self.today = day
        assert day.points is not None
        return day.points

    def end_day(self, decisions: Decisions) -> DayOutcome:
        """Stages 3-5 of the day begun by `begin_day`, with the policy's decision at each of its points."""
        day = self.today
        if day is None or day.points is None:
            raise RuntimeError("end_day without begin_day")
        if len(decisions.action) != day.points.m:
            raise ValueError(f"{len(decisions.action)} decisions for {day.points.m} decision points")
        decisions = Decisions(
            action=np.asarray(decisions.action, dtype=np.int64),
            channel=np.asarray(decisions.channel, dtype=np.int64),
            propensity=np.asarray(decisions.propensity, dtype=np.float64),
            n_eligible=np.asarray(decisions.n_eligible, dtype=np.int64),
            price=None if decisions.price is None else np.asarray(decisions.price, dtype=np.float64),
        )
        outcome = self._contacts(day, decisions)
        organic_rows, organic_product = self._organic_uptake(day)
        churned, hazard = self._churn(day)
        self._statements(day, churned)
        fr, fj = np.nonzero(day.sig_today >= 0)
        self.last_sig[day.idx[fr], fj] = day.t0 + day.sig_today[fr, fj]
        outcome.hazard_rows, outcome.hazard = day.idx, hazard
        outcome.closed_rows = day.idx[churned]
        outcome.organic_rows, outcome.organic_product = organic_rows, organic_product
        self.today = None
        self.d += 1
        return outcome

    def _life_events(self, day: _Today) -> None:
        """1. Memories decay; new life events / intents arrive at midnight (at most one per customer-day)."""
        pop, idx, t0 = self.pop, day.idx, day.t0
        self.intent_level *= self.intent_decay
        self.fat_c = (self.fat_c + self.contacts_prev) * decay(P.FATIGUE_CONTACT_TAU_DAYS)
        self.fat_d = (self.fat_d + self.dismiss_prev) * decay(P.FATIGUE_DISMISS_TAU_DAYS)
        self.contacts_prev = np.zeros(self.n)
        self.dismiss_prev = np.zeros(self.n)
        self.retention_mem *= decay(P.CHURN_RETENTION_TAU_DAYS)
        self.service_mem *= decay(P.CHURN_SERVICE_TAU_DAYS)
        self.nuisance_mem *= decay(P.CHURN_NUISANCE_TAU_DAYS)
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
        ar = np.nonzero(self.u(Stream.LIFE_ARRIVAL, idx) < -np.expm1(-total))[0]
        if len(ar):
            rows = idx[ar]
            rates = self.static_rate[rows]
            rates[:, _I["financial_distress"]] = distress[ar]
            rates[:, _I["switching"]] = switching[ar]
            ak = R.categorical(self.u(Stream.LIFE_KIND, rows), rates)
            s = 0.4 + 0.6 * self.u(Stream.LIFE_STRENGTH, rows)
            self.intent_level[rows, ak] += s
            self.t_int.add(
                row=rows, intent=ak, start_s=np.full(len(ar), t0, dtype=np.int64), strength=s, half=self.half_life[ak]
            )
            # a strong financial shock shows up in the credit score the same day
            hit = (ak == _I["financial_distress"]) & (s > 0.6)
            if hit.any():
                hr = rows[hit]
                drop = R.integers(self.u(Stream.CREDIT_SHOCK, hr), 30, 110)
                self.credit_score[hr] = np.maximum(300, self.credit_score[hr] - drop)
                self._profile_change(hr, np.full(len(hr), t0, dtype=np.int64))
        day.lvl = self.intent_level[idx]

    def _profile_change(self, rows: np.ndarray, valid_from: np.ndarray) -> None:
        """A new customers row (credit score or consent changed) valid from the given second."""
        self.profile_changes.add(
            row=rows, valid_from=valid_from, credit=self.credit_score[rows], consent=self.consent[rows]
        )

    def _signals(self, day: _Today) -> None:
        """2a. Real-time context signals, driven by intents, each with its second of the day; pay day salary."""
        pop, idx, m = self.pop, day.idx, day.m
        sig_today = np.full((m, len(P.SIGNALS)), -1, dtype=np.int64)
        p_sig = _SIG_BASE + _SIG_GAIN * np.minimum(day.lvl[:, _SIG_DRIVER], 1.5)
        if self.fee_change and day.after_k:
            p_sig[:, _S["complaint"]] += 0.0015 * pop.price_sensitivity[idx]
        fire = self.u(Stream.SIGNAL_FIRE, idx, width=len(P.SIGNALS)) < p_sig
        fire[:, _S["airport_checkin"]] &= self.abroad_until[idx] < day.d  # no new check-in while still abroad
        k, kj = np.nonzero(fire)
        if len(k):
            span = _SIG_HOUR_SPAN[kj] * 3600
            u = self.u(Stream.SIGNAL_TIME, idx[k], k=kj)
            sig_today[k, kj] = _SIG_HOUR_LO[kj] * 3600 + np.floor(u * span).astype(np.int64)
        pk = np.nonzero(pop.payday[idx] == day.date.day)[0]
        sig_today[pk, _S["salary_credit"]] = R.integers(self.u(Stream.SALARY_TIME, idx[pk]), 6 * 3600, 7 * 3600)
        fr, fj = np.nonzero(sig_today >= 0)
        if len(fr):
            self.t_sig.add(row=idx[fr], ts=day.t0 + sig_today[fr, fj], signal=fj)
        cr = np.nonzero(sig_today[:, _S["complaint"]] >= 0)[0]
        if len(cr):  # a complaint about the service (the bank's complaints register records every complaint)
            none = np.full(len(cr), -1, np.int64)
            ts = day.t0 + sig_today[cr, _S["complaint"]]
            self.t_cmp.add(row=idx[cr], ts=ts, channel=none, cause=np.zeros(len(cr), np.int64), contact_id=none)
        # trips start at the airport check-in
        trip = np.nonzero(sig_today[:, _S["airport_checkin"]] >= 0)[0]
        if len(trip):
            u = self.u(Stream.TRIP, idx[trip], width=2)
            self.abroad_until[idx[trip]] = day.d + R.integers(u[:, 0], 2, 10)
            self.trip_country[idx[trip]] = R.integers(u[:, 1], 1, len(COUNTRIES))
        day.sig_today, day.fired_row, day.fired_sig, day.payday = sig_today, fr, fj, pk

    def _money(self, day: _Today) -> None:
        """2b. Transactions and balances: salary and pay-day debits, fees, competitor transfers, spending."""
        tx = [
            self._payday_money(day),
            self._fees(day),
            self._competitor_transfers(day),
            self._transfers_in(day),
            self._spending(day),
        ]
        self._log_transactions([t for t in tx if t is not None])
        self.inv[day.idx] *= 1.0 + 0.0002 + 0.008 * R.normal(self.u(Stream.INVEST, day.idx))

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
        pop, idx, m, cur = self.pop, day.idx, day.m, self.cur
        fee_mult = P.FEE_CHANGE_MULTIPLIER if self.fee_change and day.after_k else 1.0
        fee_amt = np.zeros(m)
        if day.date.day == 1:
            fee_amt += np.array([4.5, 0.0, 12.0])[pop.segment[idx]] * fee_mult
        u = self.u(Stream.FEES, idx, width=2)
        overdrawn = (cur[idx] < 0) & (u[:, 0] < 0.25)
        fee_amt += np.where(overdrawn, 12.0 * fee_mult, 0.0)
        fk = np.nonzero(fee_amt > 0)[0]
        if not len(fk):
            return None
        r = idx[fk]
        ts = day.t0 + R.integers(u[fk, 1], 2 * 3600, 5 * 3600)
        fees = _transfer_rows(r, ts, np.round(fee_amt[fk], 2), 0, "fees")
        cur[r] -= fee_amt[fk]
        self.fee_mem[r] += fee_amt[fk] / 10.0
        return fees

    def _competitor_transfers(self, day: _Today) -> _Tx | None:
        """Competitor transfers: money leaving for another bank, on the day of the signal."""
        cur, sav = self.cur, self.sav
        ck = np.nonzero(day.sig_today[:, _S["competitor_transfer"]] >= 0)[0]
        if not len(ck):
            return None
        r = day.idx[ck]
        u = self.u(Stream.COMPETITOR, r, width=2)
        amt = np.round(np.maximum(cur[r], 0) * (0.3 + 0.4 * u[:, 0]) + sav[r] * (0.4 * u[:, 1]), 2)
        amt = np.maximum(amt, 50.0)
        out = _transfer_rows(r, day.t0 + day.sig_today[ck, _S["competitor_transfer"]], amt, 0, "competitor_transfer")
        from_sav = np.minimum(sav[r], amt * 0.5)
        sav[r] -= from_sav
        cur[r] -= amt - from_sav
        return out

    def _transfers_in(self, day: _Today) -> _Tx | None:
        """Incoming transfers."""
        u = self.u(Stream.TRANSFER_IN, day.idx, width=3)
        tin = np.nonzero(u[:, 0] < 0.03)[0]
        if not len(tin):
            return None
        r = day.idx[tin]
        amt = np.round(R.lognormal(u[tin, 1], np.log(200), 1.0), 2)
        ts = day.t0 + R.integers(u[tin, 2], 7 * 3600, 22 * 3600)
        incoming = _transfer_rows(r, ts, amt, 1, "transfer_in")
        self.cur[r] += amt
        return incoming

    def _spending(self, day: _Today) -> _Tx | None:
        """Everyday spending, the mix shifted by intents and trips; card purchases go on the card balance."""
        pop, idx, m, held, cur, card = self.pop, day.idx, day.m, self.held, self.cur, self.card
        abroad = self.abroad_until[idx] >= day.d
        cnt = R.poisson(self.u(Stream.SPEND_COUNT, idx), 0.75 * pop.spend_level[idx] * np.where(abroad, 1.6, 1.0))
        sp = np.repeat(np.arange(m), cnt)
        if not len(sp):
            return None
        r = idx[sp]
        # five uniforms per purchase, keyed by (customer, its n-th purchase today, what is drawn)
        u = self.u(Stream.SPEND, r, k=_within_group_index(cnt)[:, None] * 8 + np.arange(5)[None, :])
        pick = np.minimum(np.searchsorted(_SPEND_CUM, u[:, 0]), len(_SPEND_W) - 1)
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
            pick[special] = R.categorical(u[special, 1], w)
        # spending scales with income (so a typical customer lives within it) and with the spending habit
        scale = np.sqrt(pop.spend_level[r]) * np.power(pop.income[r] / 3_000.0, 0.8)
        amt = np.maximum(np.round(_SPEND_MED[pick] * R.lognormal(u[:, 2], 0.0, 0.6) * scale, 2), 0.5)
        chn = _SPEND_CH[pick]
        cty = np.where(ab & (chn != 1) & (chn != 3), self.trip_country[r], 0)
        ts = day.t0 + R.integers(u[:, 3], 7 * 3600, 23 * 3600)
        spent = (r, ts, amt, np.zeros(len(sp), np.int64), _SPEND_CAT[pick], chn, cty)
        has_card = held[r, _PR["credit_card"]] | held[r, _PR["travel_card"]]
        on_card = has_card & (chn <= 1) & (u[:, 4] < 0.6)
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
        pop, idx, m = self.pop, day.idx, day.m
        eng = pop.engagement[idx]
        n_login = R.poisson(self.u(Stream.LOGIN, idx), 0.6 * eng)
        lr = np.repeat(np.arange(m), n_login)
        ev_r, ev_pg, ev_k = [lr], [np.full(len(lr), -1, np.int64)], [_within_group_index(n_login)]
        ug = self.u(Stream.PAGE_GENERAL, idx, width=3)
        gen = np.nonzero(ug[:, 0] < 0.12 * eng)[0]
        if len(gen):
            general = np.array([_PG[x] for x in ("cards", "savings_rates", "investments", "insurance", "help", "fees")])
            gp = general[R.integers(ug[gen, 1], 0, len(general))]
            gp = np.where((pop.segment[idx][gen] == SEG_SB) & (ug[gen, 2] < 0.5), _PG["business"], gp)
            ev_r.append(gen)
            ev_pg.append(gp)
            ev_k.append(np.full(len(gen), 100, np.int64))
        live = np.nonzero(day.lvl.max(axis=1) > P.LIVE_INTENT_LEVEL)[0]
        lvl_live = day.lvl[live]
        pscale = 0.3 + eng[live]
        ui = self.u(Stream.PAGE_INTENT, idx[live], width=len(_INTENT_PAGES))
        for pi, (page, terms) in enumerate(_INTENT_PAGES):
            p = sum(g * np.minimum(lvl_live[:, _I[k]], 1.5) for k, g in terms) * pscale
            hit = live[ui[:, pi] < p]
            if len(hit):
                ev_r.append(hit)
                ev_pg.append(np.full(len(hit), _PG[page]))
                ev_k.append(np.full(len(hit), 200 + pi, np.int64))
        # drift: rates and fees send everyone (by engagement) to the rates / fees pages
        if day.after_k and (self.rate_shock or self.fee_change):
            page = "savings_rates" if self.rate_shock else "fees"
            p = 0.03 * eng if self.rate_shock else 0.02 * eng * pop.price_sensitivity[idx]
            hit = np.nonzero(self.u(Stream.PAGE_DRIFT, idx) < p)[0]
            ev_r.append(hit)
            ev_pg.append(np.full(len(hit), _PG[page]))
            ev_k.append(np.full(len(hit), 300, np.int64))
        rows = np.concatenate(ev_r)
        if len(rows):
            pg = np.concatenate(ev_pg)
            ue = self.u(Stream.DIGITAL_EVENT, idx[rows], k=np.concatenate(ev_k)[:, None] * 2 + np.arange(2)[None, :])
            app_share = np.where(pop.digital_first[idx[rows]], 0.85, 0.45)
            self.t_dig.add(
                row=idx[rows],
                ts=day.t0 + R.integers(ue[:, 0], 6 * 3600, 23 * 3600),
                channel=(ue[:, 1] >= app_share).astype(np.int64),  # 0 app, 1 web
                event_type=(pg >= 0).astype(np.int64),
                page=pg,
            )
        day.live = live

    # ------------------------------------------------------------------ 3. decision points and contacts
    def _triggers(self, day: _Today) -> tuple[np.ndarray, np.ndarray]:
        """Per active customer, the earliest of today's signals that triggers a decision: (signal or -1, second)."""
        fr, fj, sig_today = day.fired_row, day.fired_sig, day.sig_today
        trig_sig = np.full(day.m, -1, dtype=np.int64)
        trig_ts = np.full(day.m, np.iinfo(np.int64).max, dtype=np.int64)
        cand = self.u(Stream.TRIGGER, day.idx[fr], k=fj) < _TRIGGER_P[fj]
        if cand.any():
            cr, cj = fr[cand], fj[cand]
            cts = sig_today[cr, cj]
            o = np.lexsort((cj, cts, cr))  # per customer, the earliest triggering signal wins
            sel = o[np.unique(cr[o], return_index=True)[1]]
            trig_sig[cr[sel]] = cj[sel]
            trig_ts[cr[sel]] = cts[sel]
        return trig_sig, trig_ts

    def _decision_points(self, day: _Today) -> None:
        """Today's decision points: a triggering signal, else a scheduled campaign slot (at most one per customer)."""
        pop, table = self.pop, self.table
        trig_sig, trig_ts = self._triggers(day)
        is_trig = trig_sig >= 0
        is_sched = ~is_trig & (self.u(Stream.SCHEDULE, day.idx) < self.scheduled_rate)
        dec = np.nonzero(is_trig | is_sched)[0]
        rows = day.idx[dec]
        trig = is_trig[dec]
        u = self.u(Stream.DECISION_TIME, rows)
        sec = np.where(trig, trig_ts[dec] + R.integers(u, 60, 1800), R.integers(u, 8 * 3600, 20 * 3600))
        base_ok = table.eligible(self.age[rows], pop.segment[rows], risk_band(self.credit_score[rows]), self.held[rows])
        base_ok &= ~(table.credit[None, :] & pop.vulnerable[rows][:, None])  # no credit offers to the vulnerable
        trigger = np.where(trig, trig_sig[dec], -1)
        scheduled_loc = np.where(
            pop.preferred_channel[rows] == self.ch_index.get("atm", -9), _LOC["other"], _LOC["home"]
        )
        day.point_pos = dec
        day.points = DecisionPoints(
            day=day.d,
            customer_id=pop.customer_id[rows],
            ts=day.t0 + sec,
            trigger=trigger,
            location=np.where(trig, _SIG_LOC[np.maximum(trigger, 0)], scheduled_loc),
            eligible=base_ok,
            consent=self._channel_consent(rows),
            preferred_channel=pop.preferred_channel[rows],
            segment=pop.segment[rows],
            chunk=np.full(len(rows), self.chunk, dtype=np.int64),
            row=rows,
        )

    def _channel_consent(self, rows: np.ndarray) -> np.ndarray:
        """(m, n_channels) consent per catalogue channel (channels without a consent column are always open)."""
        cons = np.concatenate([self.consent[rows], np.ones((len(rows), 1), dtype=bool)], axis=1)
        return cons[:, self.consent_col_of_channel]  # -1 picks the all-true column (no consent needed)

    def _deliverable(self, points: DecisionPoints, decisions: Decisions) -> np.ndarray:
        """Decisions the world carries out: an action with a template on the channel, consent, product not held."""
        a, c = decisions.action, decisions.channel
        ok = (a >= 0) & (a < len(self.table.ids)) & (c >= 0) & (c < len(self.table.channels))
        a_, c_ = np.where(ok, a, 0), np.where(ok, c, 0)
        ok &= self.table.channel_ok[a_, c_] & points.consent[np.arange(points.m), c_]
        prod = self.table.product[a_]
        ok &= ~((prod >= 0) & self.held[points.row, np.maximum(prod, 0)])
        return ok

    def _contacts(self, day: _Today, decisions: Decisions) -> DayOutcome:
        """3. Deliver the decided contacts; outcomes from the true p_accept; their consequences."""
        points = day.points
        assert points is not None
        wanted = decisions.action >= 0
        ok = self._deliverable(points, decisions)
        if (wanted & ~ok).any():
            logger.debug("day %s: %s decisions not deliverable", day.d, int((wanted & ~ok).sum()))
        sel = np.nonzero(ok)[0]
        rows, act, chn = points.row[sel], decisions.action[sel], decisions.channel[sel]
        sec = points.ts[sel] - day.t0
        price = self._offered_prices(rows, act, None if decisions.price is None else decisions.price[sel])
        state = self._accept_state(day, rows, day.point_pos[sel], sec, act, chn)
        risk = risk_band(self.credit_score[rows])
        if np.isfinite(price).any():
            state.price_shift = price_shift(self.table, act, risk, price, self.pop.price_sensitivity[rows])
        p_acc = accept_probability(self.table, state)
        accepted, dismissed, out_ts = self._outcomes(day, rows, act, chn, sec, p_acc)
        p_opt, p_cmp = self._consequence_probabilities(rows, act, chn, p_acc, dismissed)
        p_organic = self.p_organic(rows, act)
        expected = self._expected_consequences(rows, act, chn, p_acc)
        cids = self._log_contacts(day, points, decisions, sel, p_acc, accepted, dismissed, out_ts, price)
        self.t_ct.add(contact_id=cids, p_accept=p_acc, p_organic=p_organic, **expected)
        opted, complained = self._contact_effects(day, rows, act, chn, cids, accepted, dismissed, out_ts, p_opt, p_cmp)
        return DayOutcome(
            point=sel,
            contact_id=cids,
            rows=rows,
            action=act,
            channel=chn,
            ts=points.ts[sel],
            p_accept=p_acc,
            p_organic=p_organic,
            p_opt_out=expected["p_opt_out"],
            p_complaint=expected["p_complaint"],
            accepted=accepted,
            dismissed=dismissed,
            opted_out=opted,
            complained=complained,
            refused=int((wanted & ~ok).sum()),
            price=price,
            risk=risk,
        )

    def _offered_prices(self, rows: np.ndarray, act: np.ndarray, decided: np.ndarray | None) -> np.ndarray:
        """Each contact's offered price (NaN: unpriced or the list price): the policy's where it gave one inside the
        customer's band, else, with `price_exploration`, a uniform draw on the band's grid (the logging policy's)."""
        t = self.table
        risk = np.clip(risk_band(self.credit_score[rows]), 0, t.price_list.shape[1] - 1)
        lo, hi, step = t.price_min[act, risk], t.price_max[act, risk], t.price_step[act, risk]
        price = np.full(len(rows), np.nan) if decided is None else np.asarray(decided, dtype=np.float64).copy()
        inside = np.isfinite(price) & (price >= lo - 1e-9) & (price <= hi + 1e-9)
        price = np.where(inside, price, np.nan)
        if self.config.price_exploration:
            n = np.round((hi - lo) / np.where(np.isfinite(step), step, 1.0))
            u = self.u(Stream.PRICE, rows, k=act)
            drawn = lo + step * np.floor(u * (np.nan_to_num(n) + 1.0))
            price = np.where(np.isfinite(price), price, np.where(np.isfinite(lo), np.round(drawn, 10), np.nan))
        return price

    def _outcomes(
        self, day: _Today, rows: np.ndarray, act: np.ndarray, chn: np.ndarray, sec: np.ndarray, p_acc: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Accepted (a draw per customer, day and action), else dismissed or ignored, and when."""
        accepted = self.u(Stream.ACCEPT, rows, k=act) < p_acc
        dismissed = ~accepted & (self.u(Stream.DISMISS, rows, k=act) < np.where(self.interactive[chn], 0.5, 0.15))
        u = self.u(Stream.OUTCOME_LAG, rows, width=2)
        lag = np.where(
            accepted,
            np.minimum(R.lognormal(u[:, 0], np.log(1200), 1.0), 3 * 3600),
            np.where(dismissed, 5 + 595 * u[:, 1], 4 * 3600),
        ).astype(np.int64)
        out_ts = np.minimum(day.t0 + sec + lag, day.day_end)
        return accepted, dismissed, out_ts

    def _consequence_probabilities(
        self, rows: np.ndarray, act: np.ndarray, chn: np.ndarray, p_acc: np.ndarray, dismissed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """P(opt-out), P(complaint) of each contact given it was not accepted (0 for service actions)."""
        p_opt, p_cmp = consequence_probabilities(self.table, chn, self.fat_c[rows], p_acc, dismissed)
        marketing = self.marketing[act]
        return np.where(marketing, p_opt, 0.0), np.where(marketing, p_cmp, 0.0)

    def _expected_consequences(
        self, rows: np.ndarray, act: np.ndarray, chn: np.ndarray, p_acc: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Before the outcome: the probability that this contact ends in an opt-out, and in a complaint."""
        p_dis = (1.0 - p_acc) * np.where(self.interactive[chn], 0.5, 0.15)
        p_ign = (1.0 - p_acc) - p_dis
        exp_opt, exp_cmp = np.zeros(len(rows)), np.zeros(len(rows))
        for share, dismissed in ((p_dis, True), (p_ign, False)):
            o, c = self._consequence_probabilities(rows, act, chn, p_acc, np.full(len(rows), dismissed))
            exp_opt += share * o
            exp_cmp += share * c
        return {"p_opt_out": exp_opt, "p_complaint": exp_cmp}

    def p_organic(self, rows: np.ndarray, act: np.ndarray) -> np.ndarray:
        """The truth's P(the customer takes the action's product on their own within the organic horizon).

        From today's midnight intent levels (see `propensity.organic_within`); 0 for a product already held."""
        gain = self.table.organic_gain[act]
        level = self.intent_level[rows]
        can = (self.age[rows] >= 18) & (~self.table.organic_credit[act] | (risk_band(self.credit_score[rows]) <= 1))
        prod = self.table.product[act]
        can &= (prod >= 0) & ~self.held[rows, np.maximum(prod, 0)]
        some = np.nonzero(can & ((gain * level).sum(axis=1) > 0))[0]  # most contacts have no organic path at all
        p = np.zeros(len(rows))
        if len(some):
            p[some] = organic_within(gain[some], level[some], self.half_life, P.ORGANIC_HORIZON_DAYS)
        return p

    def _log_contacts(
        self,
        day: _Today,
        points: DecisionPoints,
        decisions: Decisions,
        sel: np.ndarray,
        p_acc: np.ndarray,
        accepted: np.ndarray,
        dismissed: np.ndarray,
        out_ts: np.ndarray,
        price: np.ndarray,
    ) -> np.ndarray:
        """Contact rows with fresh contact ids; today's contact and dismissal counts. Returns the contact ids."""
        nc = len(sel)
        rows = points.row[sel]
        outcome = np.where(accepted, 0, np.where(dismissed, 1, 2))
        cids = self.chunk * 1_000_000_000 + self.contact_seq + np.arange(1, nc + 1, dtype=np.int64)
        self.contact_seq += nc
        ts = points.ts[sel]
        self.t_con.add(
            contact_id=cids,
            row=rows,
            ts=ts,
            action=decisions.action[sel],
            channel=decisions.channel[sel],
            trigger=points.trigger[sel],
            location=points.location[sel],
            hour=((ts - day.t0) // 3600).astype(np.int64),
            propensity=decisions.propensity[sel],
            n_eligible=decisions.n_eligible[sel],
            outcome=outcome,
            outcome_ts=out_ts,
            price=price,
        )
        self.acc_p.append(p_acc)
        self.acc_y.append(accepted)
        np.add.at(self.contacts_prev, rows, 1.0)
        np.add.at(self.dismiss_prev, rows, dismissed.astype(np.float64))
        return cids

    def _contact_effects(
        self,
        day: _Today,
        rows: np.ndarray,
        act: np.ndarray,
        chn: np.ndarray,
        cids: np.ndarray,
        accepted: np.ndarray,
        dismissed: np.ndarray,
        out_ts: np.ndarray,
        p_opt: np.ndarray,
        p_cmp: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sales open products, retention and service are remembered; unwanted contacts may opt out or complain."""
        table = self.table
        prod = table.product[act]
        kind = table.kind[act]
        sale = accepted & (prod >= 0)
        if sale.any():
            sr, sp = rows[sale], prod[sale]
            med = _PRODUCT_AMOUNT[sp]
            amt = np.where(
                med > 0, np.round(med * R.lognormal(self.u(Stream.SALE_AMOUNT, sr, k=act[sale]), 0, 0.5), 2), 0
            )
            self._open(sr, sp, out_ts[sale], amt)
        np.add.at(self.retention_mem, rows[accepted & (kind == "retention")], 1.0)
        np.add.at(self.service_mem, rows[accepted & (kind == "service")], 1.0)
        unwanted = ~accepted & table.outbound[chn] & self.marketing[act]
        np.add.at(self.nuisance_mem, rows[unwanted], 1.0)
        cc = self.consent_col_of_channel[chn]
        opted = ~accepted & (cc >= 0) & (self.u(Stream.OPT_OUT, rows, k=chn) < p_opt)
        if opted.any():
            orow = rows[opted]
            self.consent[orow, cc[opted]] = False
            self._profile_change(orow, out_ts[opted])
        complained = ~accepted & (self.u(Stream.COMPLAINT, rows, k=chn) < p_cmp)
        if complained.any():
            self._record_contact_complaints(
                day, rows[complained], chn[complained], cids[complained], out_ts[complained]
            )
        return opted, complained

    def _record_contact_complaints(
        self, day: _Today, rows: np.ndarray, chn: np.ndarray, cids: np.ndarray, after_ts: np.ndarray
    ) -> None:
        """A complaint about a contact: a `complaints` row and a `complaint` signal, which churn and switching see."""
        u = self.u(Stream.COMPLAINT, rows, k=1000)
        ts = np.minimum(after_ts + R.integers(u, 60, 3600), day.day_end)
        self.t_cmp.add(row=rows, ts=ts, channel=chn, cause=np.ones(len(rows), np.int64), contact_id=cids)
        self.t_sig.add(row=rows, ts=ts, signal=np.full(len(rows), _S["complaint"], np.int64))
        pos = np.searchsorted(day.idx, rows)
        j = _S["complaint"]
        day.sig_today[pos, j] = np.maximum(day.sig_today[pos, j], ts - day.t0)

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

    def candidate_state(self, points: DecisionPoints, action: np.ndarray, channel: np.ndarray) -> AcceptState:
        """The true acceptance state of showing `action` on `channel` at each point of today (for oracles)."""
        day = self.today
        if day is None:
            raise RuntimeError("no day in progress: call begin_day first")
        pos = np.searchsorted(day.idx, points.row)
        return self._accept_state(day, points.row, pos, points.ts - day.t0, action, channel)

    def _organic_uptake(self, day: _Today) -> tuple[np.ndarray, np.ndarray]:
        """4. Products taken up without any offer, late in the evening, driven by intents. Returns (rows, products)."""
        li = day.idx[day.live]
        u = self.u(Stream.ORGANIC, li, width=len(P.ORGANIC_UPTAKE))
        out_r, out_p = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
        for jj, (prod_name, terms) in enumerate(P.ORGANIC_UPTAKE.items()):
            j = _PR[prod_name]
            p = sum(g * np.minimum(self.intent_level[li, _I[k]], P.ORGANIC_LEVEL_CAP) for k, g in terms.items())
            can = ~self.held[li, j] & (self.age[li] >= 18)
            if prod_name in P.ORGANIC_CREDIT_CHECK:
                can &= risk_band(self.credit_score[li]) <= 1
            hit = np.nonzero(can & (u[:, jj] < p))[0]
            if len(hit):
                r = li[hit]
                ud = self.u(Stream.ORGANIC_DETAIL, r, k=(2 * j + np.arange(2))[None, :].repeat(len(r), axis=0))
                amt = np.round(P.PRODUCT_AMOUNT[prod_name] * R.lognormal(ud[:, 0], 0.0, 0.5), 2)
                opened = day.t0 + R.integers(ud[:, 1], 23 * 3600, 23 * 3600 + 3540)
                self._open(r, np.full(len(r), j), opened, amt)
                out_r.append(r)
                out_p.append(np.full(len(r), j, np.int64))
        return np.concatenate(out_r), np.concatenate(out_p)

    def _open(self, rows: np.ndarray, prods: np.ndarray, opened_s: np.ndarray, amount: np.ndarray) -> None:
        """A product opens: holding row, and balances move (a loan pays out, deposits move money in)."""
        self.held[rows, prods] = True
        self.n_held[rows] += 1
        self.t_hold.add(row=rows, product=prods, opened_s=opened_s, amount=amount)
        _apply_new_product(rows, prods, amount, self.sav, self.loan, self.mort, self.inv, self.cur)

    def _churn_logit(self, day: _Today) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The true daily churn logit of every active customer and the drivers the closure reason is drawn from."""
        pop, idx = self.pop, day.idx
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
        nuisance = P.CHURN_NUISANCE_GAIN * np.log1p(self.nuisance_mem[idx])
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
            + nuisance
        )
        competitor = switch_term + P.CHURN_COMPETITOR_GAIN * ctr_rec
        return logit, competitor, fee_term, P.CHURN_COMPLAINT_GAIN * comp_rec + nuisance, nuisance

    def _churn(self, day: _Today) -> tuple[np.ndarray, np.ndarray]:
        """5. The true daily hazard; closures at 23:59:59. Returns (who closed: mask over idx, the hazard)."""
        idx, m, d = day.idx, day.m, day.d
        logit, competitor, fees, service, _ = self._churn_logit(day)
        hazard = sigmoid(logit)
        self.last_hazard[idx] = hazard
        if d % self.config.effective_hazard_cadence == 0:
            self.t_haz.add(row=idx, day=np.full(m, d, dtype=np.int64), hazard=hazard)
        if d % 7 == 0:
            self.snap_rows.append(idx)
            self.snap_days.append(np.full(m, d, dtype=np.int64))
            self.snap_h.append(hazard)
        churn = self.u(Stream.CHURN, idx) < hazard
        ci = np.nonzero(churn)[0]
        if len(ci):
            r = idx[ci]
            self.closed[r] = True
            self.close_day[r] = d
            # the reason is the driver that pushed hardest (competitor, fees, service), else moved / other
            contrib = np.stack([competitor[ci], fees[ci], service[ci], np.full(len(ci), 0.7)], axis=1)
            u = self.u(Stream.CHURN_REASON, r, width=5)
            reason = np.argmax(contrib + R.gumbel(u[:, :4], 0.3), axis=1)
            reason = np.where(reason == 3, np.where(u[:, 4] < 0.6, 3, 4), reason)
            self.t_clo.add(row=r, ts=np.full(len(r), day.day_end, dtype=np.int64), reason=reason)
        return churn, hazard

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
    def marks(self) -> dict[str, int]:
        """Positions in every output table, to read what a day added (`tables(since=marks)`)."""
        return {name: cols.mark() for name, cols in self._outputs().items()}

    def _outputs(self) -> dict[str, _Columns]:
        return {
            "profile_changes": self.profile_changes,
            "holdings": self.t_hold,
            "balances": self.t_bal,
            "transactions": self.t_tx,
            "digital_events": self.t_dig,
            "context_signals": self.t_sig,
            "contacts": self.t_con,
            "closures": self.t_clo,
            "complaints": self.t_cmp,
            "intents": self.t_int,
            "churn_hazard": self.t_haz,
            "contact_truth": self.t_ct,
        }

    def tables(self, since: dict[str, int] | None = None) -> dict[str, dict[str, np.ndarray]]:
        """Every table's rows (times in seconds since the world start), or only those added after `since`."""
        i64, f64, b = np.dtype(np.int64), np.dtype(np.float64), np.dtype(bool)
        s = since or {}
        out = self._outputs()
        balance_cols = ("current", "savings", "card", "loan", "mortgage", "investment")
        contact_int = ("contact_id", "row", "ts", "action", "channel", "trigger", "location", "hour")
        names: dict[str, dict[str, np.dtype]] = {
            "profile_changes": {"row": i64, "valid_from": i64, "credit": i64, "consent": b},
            "holdings": {"row": i64, "product": i64, "opened_s": i64, "amount": f64},
            "balances": {"row": i64, "as_of": i64, **dict.fromkeys(balance_cols, f64)},
            "transactions": {
                "transaction_id": i64,
                "row": i64,
                "ts": i64,
                "amount": f64,
                **dict.fromkeys(("direction", "category", "channel", "country"), i64),
            },
            "digital_events": dict.fromkeys(("row", "ts", "channel", "event_type", "page"), i64),
            "context_signals": dict.fromkeys(("row", "ts", "signal"), i64),
            "contacts": {
                **dict.fromkeys(contact_int, i64),
                "propensity": f64,
                "n_eligible": i64,
                "outcome": i64,
                "outcome_ts": i64,
                "price": f64,
            },
            "closures": dict.fromkeys(("row", "ts", "reason"), i64),
            "complaints": dict.fromkeys(("row", "ts", "channel", "cause", "contact_id"), i64),
            "intents": {"row": i64, "intent": i64, "start_s": i64, "strength": f64, "half": f64},
            "churn_hazard": {"row": i64, "day": i64, "hazard": f64},
            "contact_truth": {
                "contact_id": i64,
                **dict.fromkeys(("p_accept", "p_organic", "p_opt_out", "p_complaint"), f64),
            },
        }
        return {name: out[name].result(cols, since=s.get(name, 0)) for name, cols in names.items()}

    def result(self) -> ChunkResult:
        """Everything the chunk produced, with the starting holdings and profiles, and the AUC ingredients."""
        pop = self.pop
        tables = self.tables()
        tables["start_state"] = {"credit": pop.credit_score, "consent": pop.consent}
        tables["holdings"] = {k: np.concatenate([pop.start_holdings[k], v]) for k, v in tables["holdings"].items()}
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
    policy: ContactPolicy,
    on_day: Callable[[int], None] | None = None,
) -> ChunkResult:
    """Live `pop` through `config.days` days under `policy`; returns every table's rows for these customers.

    `on_day(d)` is called after each simulated day (progress reporting).
    """
    return ChunkSimulation(config, table, pop, rng, chunk_index).run(policy, on_day)


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
    "COMPLAINT_CAUSES",
    "COUNTRIES",
    "OUTCOMES",
    "PAGES",
    "TX_CATEGORIES",
    "TX_CHANNELS",
    "TX_DIRECTIONS",
    "ChunkResult",
    "ChunkSimulation",
    "DayOutcome",
    "simulate_chunk",
]
