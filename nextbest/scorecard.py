"""The scorecard of served traffic: per policy, model version, campaign or experiment arm, and against the control.

Read from a project's decision log (`nextbest.decision_log`: decisions, decision_contacts, feedback, events,
consents). Two levels, defined in docs/decisioning.md:

- per decision (relevance and value of what was shown): delivered actions, acceptance and dismissal rates among
  the delivered actions that got feedback, the realised value of accepted actions (the feedback's `value` when it
  carries one, e.g. the loan amount; else the catalogue value of the action) and value per decision;
- per customer (intent to treat, what uplift is claimed on): each customer a group decided for counts once in that
  group; their outcomes from their first decision in the group to the end of the window are conversion (an accepted
  action or a conversion event), revenue (accepted values + conversion events' `value`), churn (a churn event) and
  opt-out (a consent withdrawal). Uplift is a group's mean revenue per customer minus its control's: the difference
  of two means with the Welch (unpooled) standard error, sqrt(s1^2/n1 + s2^2/n2), and a normal 95% interval
  (diff +- 1.96 se); the same for the conversion rate.

Which decisions are the control: the universal holdout (`holdout`, as logged with the decision; for a log that does
not carry it, recomputed from the customer key and the project's `serving.assignment`), and per campaign its control
group (`campaign_control`). The grouping columns (`arm`, `campaign_id`, ...) are optional: a log without them gives
one treated group, and a log without any control gives no uplift (a note says so). `scorecard_frame` returns the
scorecard as a DataFrame (for a dashboard); `build_scorecard` reads a project's log; `plot_scorecard` draws it;
`monitoring.scorecard_view.save_to_workspace` adds it as a snapshot to the project's Evidently workspace.

Each treated group also gets the fairness check (`nextbest.fairness`, docs/fairness.md): the adverse-impact ratio of
its credit offer rate (per customer: delivered at least one credit action) and of its mean offered price per product
across age bands (the age feature in the decision's logged features) and the project's protected attributes (read
from their own source), with intervals and a flag below the project's threshold (`Scorecard.fairness`; the frame's
`fairness_ratio` is the group's lowest judged ratio, `fairness_flags` how many ratios are flagged).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from nextbest.assignment import LOG_FIELDS, Assigner
from nextbest.catalogue import MARKETING_KINDS
from nextbest.errors import ConfigError, NotReadyError
from nextbest.fairness import (
    FairnessReport,
    FairnessSpec,
    age_feature,
    decision_set_report,
    plain,
    protected_values,
)

if TYPE_CHECKING:
    from nextbest.catalogue import Catalogue
    from nextbest.project import Project
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

Grouping = Literal["policy", "model", "campaign", "arm"]
GROUPINGS: tuple[str, ...] = ("policy", "model", "campaign", "arm")
HOLDOUT = "holdout"
#: two-sided 95% normal quantile
Z95 = 1.959963984540054
STATISTIC = "difference of means, Welch (unpooled) standard error, normal 95% interval"
#: event types (the `events` table) that count as an outcome, unless the caller names others
CONVERSION_EVENTS: tuple[str, ...] = ("product_opened", "conversion")
CHURN_EVENTS: tuple[str, ...] = ("account_closed", "churned")
OPT_OUT_EVENTS: tuple[str, ...] = ("consent_withdrawn",)


@dataclass
class LogFrames:
    """The parts of a decision log a scorecard reads (customer keys as the log stores them: text)."""

    decisions: pd.DataFrame
    contacts: pd.DataFrame
    feedback: pd.DataFrame
    events: pd.DataFrame
    consents: pd.DataFrame


# -------------------------------------------------------------------- reading the log


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def read_log(uri: str, since: datetime | None = None, until: datetime | None = None) -> LogFrames:
    """Decisions in [since, until), their delivered actions and feedback, and the events and consent changes since
    `since` (outcomes after `until` do not count)."""
    import sqlalchemy as sa

    from nextbest.decision_log import consents, decision_contacts, decisions, events, feedback, make_engine

    engine = make_engine(uri)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table("decisions"):
                raise NotReadyError(f"no decision log at {uri}: serve some traffic first (`nextbest serve`)")
            present = {c["name"] for c in inspector.get_columns("decisions")}
            d = decisions.c
            optional = [decisions.c[n] if n in d else sa.column(n) for n in LOG_FIELDS if n in present]
            cols = [d.decision_id, d.ts, d.customer_id, d.channel, d.policy_version, d.model_versions, *optional]
            window = [d.ts >= since] if since else []
            window += [d.ts < until] if until else []
            chosen = sa.select(d.decision_id).where(*window)
            frames = LogFrames(
                decisions=pd.read_sql(sa.select(*cols).select_from(decisions).where(*window), conn),
                contacts=_read(conn, decision_contacts, decision_contacts.c.decision_id.in_(chosen)),
                feedback=_read(conn, feedback, feedback.c.decision_id.in_(chosen)),
                events=_read(conn, events, *_between(events.c.ts, since, until)),
                consents=_read(conn, consents, *_between(consents.c.ts, since, until)),
            )
    finally:
        engine.dispose()
    for frame in (frames.decisions, frames.contacts, frames.feedback, frames.events, frames.consents):
        if "ts" in frame:
            frame["ts"] = _utc(frame["ts"])
    return frames


def _between(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    return [c for c in ((column >= since) if since else None, (column < until) if until else None) if c is not None]


def _read(conn: Any, table: Any, *where: Any) -> pd.DataFrame:
    import sqlalchemy as sa

    return pd.read_sql(sa.select(table).where(*where), conn)


# -------------------------------------------------------------------- groups and controls


def _flag(frame: pd.DataFrame, name: str) -> pd.Series:
    """A logged boolean column (SQLite: 0/1; missing: false)."""
    if name not in frame:
        return pd.Series(False, index=frame.index)
    return frame[name].astype(object).where(frame[name].notna(), False).astype(bool)


def _model_label(versions: object, models: Sequence[str] | None) -> str:
    if not isinstance(versions, Mapping) or not versions:
        return "unknown"
    names = [m for m in (models or sorted(versions)) if m in versions] or sorted(versions)
    return ", ".join(f"{m} v{versions[m]}" for m in names)


def _treated_group(decisions: pd.DataFrame, by: str, assigner: Assigner | None, models: Sequence[str] | None) -> Any:
    if by == "policy":
        return decisions["policy_version"].fillna("unknown").astype(str)
    if by == "model":
        return decisions["model_versions"].map(lambda v: _model_label(v, models))
    if by == "campaign":
        if "campaign_id" not in decisions:
            return pd.Series("real-time", index=decisions.index)
        return decisions["campaign_id"].where(decisions["campaign_id"].notna(), "real-time").astype(str)
    if "arm" in decisions and decisions["arm"].notna().any():
        return decisions["arm"].fillna("unassigned").astype(str)
    if assigner is not None and assigner.config.splits:
        return pd.Series(assigner.arm(assigner.config.splits[0].name, decisions["customer_id"]), index=decisions.index)
    return pd.Series("all", index=decisions.index)


def assign_groups(
    decisions: pd.DataFrame,
    by: str,
    assigner: Assigner | None = None,
    models: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The decisions with `group`, `control` (bool) and `baseline` (the control group a group is measured against).

    The universal holdout is one group (`holdout`), whatever the grouping; a campaign's control is `<id> control`
    under `by=campaign`, and `campaign control` (not a baseline) otherwise. The holdout flag is the logged one; when
    the log carries none, it is recomputed from the key with `assigner` (the project's assignment)."""
    if by not in GROUPINGS:
        raise ConfigError(f"scorecard: unknown grouping {by!r}; use one of {', '.join(GROUPINGS)}")
    out = decisions.copy()
    if "holdout" in out and out["holdout"].notna().any():
        holdout = _flag(out, "holdout")
    elif assigner is not None and assigner.config.holdout.share > 0:
        holdout = pd.Series(assigner.in_holdout(out["customer_id"].astype(str)), index=out.index)
    else:
        holdout = pd.Series(False, index=out.index)
    control = _flag(out, "campaign_control") & ~holdout
    group = _treated_group(out, by, assigner, models)
    control_label = group + " control" if by == "campaign" else "campaign control"
    group = group.where(~control, control_label)
    out["group"] = group.where(~holdout, HOLDOUT)
    out["control"] = holdout | control
    present = set(out["group"])
    baselines = {}
    for g in present:
        own = f"{g} control"
        baselines[g] = own if by == "campaign" and own in present else HOLDOUT if HOLDOUT in present else None
    out["baseline"] = out["group"].map(baselines).where(~out["control"], None)
    return out


# -------------------------------------------------------------------- values and outcomes


def contact_values(contacts: pd.DataFrame, feedback: pd.DataFrame, catalogue_values: Mapping[str, float]) -> pd.Series:
    """The realised value of each delivered action (0 unless accepted): the feedback's value when it carries one
    (feedback naming no action: its decision's first accepted action), else the catalogue value."""
    if contacts.empty:
        return pd.Series(dtype="float64")
    accepted = contacts["outcome"].eq("accepted")
    catalogue = contacts["action_id"].map(catalogue_values).astype("float64").fillna(0.0)
    realised = pd.Series(np.nan, index=contacts.index)
    fb = feedback.loc[feedback["outcome"].eq("accepted") & feedback["value"].notna()] if len(feedback) else feedback
    if len(fb):
        last = fb.sort_values("ts").groupby(["decision_id", "action_id"], dropna=False)["value"].last()
        named = last.loc[[a is not None and not pd.isna(a) for a in last.index.get_level_values(1)]]
        keys = pd.MultiIndex.from_arrays([contacts["decision_id"], contacts["action_id"]])
        realised[:] = named.reindex(keys).to_numpy()
        whole = last.loc[[a is None or pd.isna(a) for a in last.index.get_level_values(1)]].droplevel(1)
        first = contacts.loc[accepted].sort_values("rank").groupby("decision_id").head(1).index
        take = realised.index.isin(first) & realised.isna()
        realised[take] = contacts.loc[take, "decision_id"].map(whole).to_numpy()
    return pd.Series(np.where(accepted, realised.fillna(catalogue), 0.0), index=contacts.index)


def _payload_value(payload: object) -> float:
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return 0.0
    value = payload.get("value") if isinstance(payload, Mapping) else None
    try:
        x = float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    return x if math.isfinite(x) else 0.0


def _after_first(first: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (customer_id, ts, ...) joined to every (group, customer) whose first decision is at or before them."""
    joined = first.merge(rows, on="customer_id", suffixes=("_first", ""))
    return joined.loc[joined["ts"] >= joined["ts_first"]]


@dataclass(frozen=True)
class OutcomeTypes:
    """Which logged events are outcomes (the defaults are the platform's event names)."""

    conversion: tuple[str, ...] = CONVERSION_EVENTS
    churn: tuple[str, ...] = CHURN_EVENTS
    opt_out: tuple[str, ...] = OPT_OUT_EVENTS


def customer_outcomes(
    grouped: pd.DataFrame,
    contacts: pd.DataFrame,
    events: pd.DataFrame,
    consents: pd.DataFrame,
    outcomes: OutcomeTypes = OutcomeTypes(),
) -> pd.DataFrame:
    """One row per (group, customer): revenue, converted, churned, opted_out (see the module docstring).

    `contacts` carries each delivered action's `value` and its decision's `group`."""
    first = grouped.groupby(["group", "customer_id"], as_index=False)["ts"].min()
    out = first.set_index(["group", "customer_id"])
    accepted = contacts.loc[contacts["outcome"].eq("accepted")]
    out["revenue"] = accepted.groupby(["group", "customer_id"])["value"].sum().reindex(out.index).fillna(0.0)
    out["converted"] = out.index.isin(accepted.set_index(["group", "customer_id"]).index)
    ev = events.loc[events["event_type"].isin(outcomes.conversion)] if len(events) else events
    if len(ev):
        ev = ev.assign(value=ev["payload"].map(_payload_value))[["customer_id", "ts", "value"]]
        hits = _after_first(first, ev).groupby(["group", "customer_id"])["value"]
        out["revenue"] += hits.sum().reindex(out.index).fillna(0.0)
        out["converted"] |= out.index.isin(hits.size().index)
    out["churned"] = _happened(first, events, outcomes.churn, out.index)
    withdrawals = consents.loc[~consents["granted"].astype(bool)] if len(consents) else consents
    out["opted_out"] = _happened(first, withdrawals, None, out.index)
    if not len(withdrawals):
        out["opted_out"] = _happened(first, events, outcomes.opt_out, out.index)
    return out.reset_index()


def _happened(first: pd.DataFrame, rows: pd.DataFrame, types: Sequence[str] | None, index: pd.Index) -> np.ndarray:
    if len(rows) and types is not None:
        rows = rows.loc[rows["event_type"].isin(types)]
    if not len(rows):
        return np.zeros(len(index), bool)
    hits = _after_first(first, rows[["customer_id", "ts"]])
    return index.isin(pd.MultiIndex.from_frame(hits[["group", "customer_id"]]))


# -------------------------------------------------------------------- the scorecard


def _decision_metrics(grouped: pd.DataFrame, contacts: pd.DataFrame) -> pd.DataFrame:
    per = grouped.groupby("group").agg(decisions=("decision_id", "size"), customers=("customer_id", "nunique"))
    marketing = contacts.loc[contacts["kind"].isin(MARKETING_KINDS)].groupby("group")["decision_id"].nunique()
    per["marketing_decisions"] = marketing.reindex(per.index).fillna(0).astype(int)
    c = contacts.groupby("group")
    per["delivered"] = c.size().reindex(per.index).fillna(0).astype(int)
    with_feedback = contacts.loc[contacts["outcome"].isin(("shown", "accepted", "dismissed", "ignored"))]
    per["with_feedback"] = with_feedback.groupby("group").size().reindex(per.index).fillna(0).astype(int)
    for outcome, name in (("accepted", "accepted"), ("dismissed", "dismissed")):
        hits = contacts.loc[contacts["outcome"].eq(outcome)].groupby("group").size()
        per[name] = hits.reindex(per.index).fillna(0).astype(int)
    seen = per["with_feedback"].where(per["with_feedback"] > 0)
    per["acceptance_rate"] = per["accepted"] / seen
    per["dismissal_rate"] = per["dismissed"] / seen
    per["value"] = c["value"].sum().reindex(per.index).fillna(0.0)
    per["value_per_decision"] = per["value"] / per["decisions"]
    return per


def _customer_metrics(customers: pd.DataFrame) -> pd.DataFrame:
    g = customers.groupby("group")
    per = pd.DataFrame(
        {
            "conversions": g["converted"].sum().astype(int),
            "conversion_rate": g["converted"].mean(),
            "revenue": g["revenue"].sum(),
            "revenue_per_customer": g["revenue"].mean(),
            "revenue_sd": g["revenue"].std(ddof=1),
            "churned": g["churned"].sum().astype(int),
            "churn_rate": g["churned"].mean(),
            "opt_outs": g["opted_out"].sum().astype(int),
            "opt_out_rate": g["opted_out"].mean(),
        }
    )
    per["conversion_sd"] = g["converted"].std(ddof=1)
    return per


def difference_ci(
    mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int, z: float = Z95
) -> tuple[float, float, float, float]:
    """(a - b, its Welch standard error, low, high) of two independent means; NaN where a group has < 2 members."""
    if n_a < 2 or n_b < 2:
        return mean_a - mean_b, math.nan, math.nan, math.nan
    se = math.sqrt((sd_a or 0.0) ** 2 / n_a + (sd_b or 0.0) ** 2 / n_b)
    diff = mean_a - mean_b
    return diff, se, diff - z * se, diff + z * se


def _uplifts(card: pd.DataFrame) -> pd.DataFrame:
    cols = ["uplift", "uplift_se", "uplift_low", "uplift_high", "conversion_uplift", "conversion_uplift_se"]
    cols += ["conversion_uplift_low", "conversion_uplift_high", "relative_uplift"]
    for col in cols:
        card[col] = np.nan
    for g, row in card.iterrows():
        b = row["baseline"]
        if not isinstance(b, str) or b not in card.index:
            continue
        base = card.loc[b]
        n, nb = int(row["customers"]), int(base["customers"])
        rev = difference_ci(
            row["revenue_per_customer"], row["revenue_sd"], n, base["revenue_per_customer"], base["revenue_sd"], nb
        )
        conv = difference_ci(
            row["conversion_rate"], row["conversion_sd"], n, base["conversion_rate"], base["conversion_sd"], nb
        )
        card.loc[g, cols[:4]] = rev
        card.loc[g, cols[4:8]] = conv
        if base["revenue_per_customer"] > 0:
            card.loc[g, "relative_uplift"] = rev[0] / base["revenue_per_customer"]
    return card


def scorecard_frame(
    frames: LogFrames,
    catalogue_values: Mapping[str, float],
    by: str = "arm",
    assigner: Assigner | None = None,
    models: Sequence[str] | None = None,
    outcomes: OutcomeTypes = OutcomeTypes(),
) -> pd.DataFrame:
    """The scorecard as a DataFrame, one row per group (index `group`), controls included (`role`)."""
    if frames.decisions.empty:
        return pd.DataFrame()
    grouped = assign_groups(frames.decisions, by, assigner, models)
    contacts = frames.contacts.copy()
    contacts["value"] = contact_values(contacts, frames.feedback, catalogue_values)
    owner = grouped.set_index("decision_id")[["group"]]
    contacts = contacts.drop(columns=["group"], errors="ignore").join(owner, on="decision_id")
    contacts = contacts.loc[contacts["group"].notna()]
    card = _decision_metrics(grouped, contacts)
    customers = customer_outcomes(grouped, contacts, frames.events, frames.consents, outcomes)
    card = card.join(_customer_metrics(customers))
    roles = grouped.groupby("group").agg(control=("control", "any"), baseline=("baseline", "first"))
    card = card.join(roles)
    card.insert(0, "role", np.where(card.pop("control"), "control", "treatment"))
    card = _uplifts(card)
    order = sorted(card.index, key=lambda g: (card.loc[g, "role"] == "control", g))
    return card.loc[order].rename_axis("group")


@dataclass
class Scorecard:
    """A project's scorecard over a window: the frame, how it was grouped, and what could not be measured."""

    project: str
    by: str
    since: datetime | None
    until: datetime | None
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    statistic: str = STATISTIC
    #: the fairness check of each treated group (`nextbest.fairness`)
    fairness: dict[str, FairnessReport] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for group, row in self.frame.iterrows():
            rows.append({"group": group, **{k: plain(v) for k, v in row.items()}})
        return {
            "project": self.project,
            "by": self.by,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "statistic": self.statistic,
            "notes": self.notes,
            "groups": rows,
            "fairness": {g: report.to_dict() for g, report in self.fairness.items()},
        }


def _notes(frame: pd.DataFrame, frames: LogFrames) -> list[str]:
    notes = []
    if frame.empty:
        return ["no decisions in the window"]
    if not (frame["role"] == "control").any():
        notes.append("no control group in the log or the assignment (serving.assignment.holdout): no uplift")
    missing = [c for c in ("holdout", "arm", "campaign_id") if c not in frames.decisions]
    if missing:
        notes.append(f"the log carries no {', '.join(missing)} column(s): holdout and arms recomputed from the keys")
    if frames.feedback.empty:
        notes.append("no feedback in the window: acceptance, dismissals and realised values are unknown")
    return notes


# -------------------------------------------------------------------- fairness


def read_details(
    uri: str, since: datetime | None, until: datetime | None, age: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per decision: `decision_id`, `age` from its logged features; per recommended action with a price:
    `decision_id`, `action_id`, `price`) of the decisions in [since, until)."""
    import sqlalchemy as sa

    from nextbest.decision_log import decisions, make_engine

    d = decisions.c
    cols = [d.decision_id, d.chosen]
    cols.append(d.features[age].as_float().label("age") if age else sa.literal(None).label("age"))
    window = [d.ts >= since] if since else []
    window += [d.ts < until] if until else []
    engine = make_engine(uri)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(*cols).where(*window)).all()
    finally:
        engine.dispose()
    ages = pd.DataFrame({"decision_id": [r.decision_id for r in rows], "age": [r.age for r in rows]})
    priced = [
        (r.decision_id, a.get("action_id"), a.get("price"))
        for r in rows
        for a in (r.chosen if isinstance(r.chosen, list) else [])
        if isinstance(a, Mapping) and a.get("price") is not None
    ]
    return ages, pd.DataFrame(priced, columns=["decision_id", "action_id", "price"])


def fairness_by_group(
    grouped: pd.DataFrame,
    contacts: pd.DataFrame,
    ages: pd.DataFrame,
    prices: pd.DataFrame,
    catalogue: Catalogue,
    spec: FairnessSpec,
    protected: pd.DataFrame | None = None,
) -> dict[str, FairnessReport]:
    """The fairness check of every treated group (`assign_groups`' output): its customers, their ages, the credit
    actions delivered to them (`contacts`) and the prices recommended with them (`prices`)."""
    treated = grouped.loc[~grouped["control"].astype(bool), ["decision_id", "customer_id", "ts", "group"]]
    treated = treated.sort_values("ts").merge(ages, on="decision_id", how="left")
    offers = contacts[["decision_id", "action_id"]].merge(treated[["decision_id", "customer_id", "group"]])
    if len(prices):
        offers = offers.merge(prices, on=["decision_id", "action_id"], how="left")
    out = {}
    for group, part in treated.groupby("group", sort=True):
        own = offers.loc[offers["group"] == group]
        out[str(group)] = decision_set_report(part, own, catalogue, spec, protected)
    return out


def _with_fairness(frame: pd.DataFrame, reports: Mapping[str, FairnessReport]) -> pd.DataFrame:
    frame = frame.copy()
    frame["fairness_ratio"] = [reports[g].min_ratio if g in reports else np.nan for g in frame.index]
    frame["fairness_flags"] = [len(reports[g].flagged) if g in reports else 0 for g in frame.index]
    return frame


def _fairness_of(
    project: Project, frames: LogFrames, uri: str, by: str, assigner: Assigner, models: Sequence[str], since: Any,
    until: Any,
) -> dict[str, FairnessReport]:  # fmt: skip
    if frames.decisions.empty:
        return {}
    catalogue = project.decisions()[1]
    ages, prices = read_details(uri, since, until, age_feature(project))
    protected = protected_values(project.fairness, project) if project.fairness.protected else None
    grouped = assign_groups(frames.decisions, by, assigner, models)
    return fairness_by_group(grouped, frames.contacts, ages, prices, catalogue, project.fairness, protected)


def build_scorecard(
    project: Project,
    settings: Settings,
    by: str = "arm",
    since: datetime | None = None,
    until: datetime | None = None,
    outcomes: OutcomeTypes = OutcomeTypes(),
) -> Scorecard:
    """Read the project's decision log and compute its scorecard (see the module docstring)."""
    serving, catalogue, _ = project.decisions()
    uri = project.decision_log_uri(settings)
    frames = read_log(uri, since, until)
    assigner = Assigner(project.name, serving.assignment)
    models = tuple(dict.fromkeys(project.action_models.values()))
    frame = scorecard_frame(frames, {a.id: a.value for a in catalogue.actions}, by, assigner, models, outcomes)
    fairness = _fairness_of(project, frames, uri, by, assigner, models, since, until)
    frame = _with_fairness(frame, fairness) if not frame.empty else frame
    notes = _notes(frame, frames)
    for group, report in fairness.items():
        notes += [f"fairness, {group}: {line}" for line in (*report.notes, *report.reasons())]
    card = Scorecard(project.name, by, since, until, frame, notes, fairness=fairness)
    logger.info("scorecard of %s by %s: %d group(s), %d decisions", project.name, by, len(frame), len(frames.decisions))
    return card


def plot_scorecard(card: Scorecard, path: Path) -> Path:
    """Revenue per customer and conversion rate per group with 95% intervals (controls in grey), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    frame = card.frame
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(frame) + 2.5), constrained_layout=True)
    colours = ["#9e9e9e" if r == "control" else "#1f77b4" for r in frame["role"]]
    labels = list(frame.index)
    n = frame["customers"].clip(lower=1)
    for ax, mean, sd, title in (
        (axes[0], frame["revenue_per_customer"], frame["revenue_sd"], "revenue per customer"),
        (axes[1], frame["conversion_rate"], frame["conversion_sd"], "conversion rate"),
    ):
        err = (Z95 * sd.fillna(0.0) / np.sqrt(n)).to_numpy()
        ax.barh(labels, mean.to_numpy(), xerr=err, color=colours, capsize=3)
        ax.invert_yaxis()
        ax.set_title(f"{title} (95% interval)")
    axes[1].xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    for i, (_, row) in enumerate(frame.iterrows()):
        if not pd.isna(row["uplift_low"]):
            text = f"uplift {row['uplift']:+,.2f} [{row['uplift_low']:+,.2f}, {row['uplift_high']:+,.2f}]"
            axes[0].annotate(
                text,
                (0, i),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none"},
            )
    window = f"{card.since:%Y-%m-%d}" if card.since else "start"
    fig.suptitle(f"{card.project}: scorecard by {card.by}, {window} .. {card.until or 'now'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scorecard_folder(project: Project, settings: Settings) -> Path:
    """Where a project's scorecard artefacts go: `<project home>/reports/scorecard/`."""
    return project.home(settings) / "reports" / "scorecard"
