"""Outbound campaigns: the spec, the audience's features, the candidate grid, the allocation under channel limits.

A campaign (`nextbest campaign run SPEC`, driven by `nextbest.jobs.campaign`) decides, for a segment or the whole
base, per customer the best action, channel and send time through the one engine and policy of the project (the
real-time path's), under a volume and/or budget limit per channel, and logs one decision per customer decided. This
module holds what needs no engine, so each step can be tested alone:

1. the spec (`CampaignSpec`, YAML; `load_campaign`), validated against the project's catalogue and segments;
2. the audience's features (`read_audience`): the latest row of every entity in each served view at or before the
   as-of date within the view's TTL, read column-wise from the feature project's offline tables with DuckDB -- the
   rule (and the function, `nextbest.features.store.latest_rows`' query) the materialization uses to fill the online
   store, so right after `materialize` these are the values a real-time request reads (pushes since excepted), at a
   few seconds per million entities instead of a million online reads; request-time context is added by the
   engine itself from these rows, as for an online read;
3. the candidate grid (`candidates`): every (channel, send slot) of the spec; the engine proposes, for each, the
   customer's best action with `decide_batch(..., dry_run=True)`;
4. the allocation (`allocate`): per customer the candidate of highest priority net of the channel's cost
   (`Catalogue.channel_cost`), greedily by net value over all (customer, candidate) pairs, so a channel's volume or
   budget goes to its highest priorities and a customer whose best channel is full falls back to the next one;
   campaign-control customers take part in the ranking (so the control is drawn from exactly the customers the
   campaign selects) but use no volume or budget (they are sent nothing);
5. the contact list (`contact_frame`, `write_table`): customer, action, channel, send time, template, priority,
   decision id.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from nextbest.base import Frozen
from nextbest.catalogue import MARKETING_KINDS
from nextbest.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pyarrow as pa

    from nextbest.features.project import FeatureProject
    from nextbest.project import Project
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

_NAME = r"^[a-z][a-z0-9_]*$"
#: the contact list's columns, in order
CONTACT_COLUMNS: tuple[str, ...] = (
    "customer_id", "action_id", "channel", "send_time", "template_id", "priority", "propensity", "cost",
    "price", "band", "band_version", "decision_id",
)  # fmt: skip


# -------------------------------------------------------------------- the spec


class SpecError(ConfigError):
    """A campaign spec's error, naming the spec (`where`) and the field (`channels.0.volume`)."""

    def __init__(self, where: object, field: str, detail: str) -> None:
        super().__init__(f"{where}: {field}: {detail}")
        self.field = field
        self.detail = detail


def _time_of_day(value: object) -> object:
    """A send slot: "HH:MM" (UTC); YAML 1.1 reads an unquoted 18:30 as the sexagesimal integer 1110 (minutes)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    return value


class ChannelLimit(Frozen):
    """One channel of a campaign: at most `volume` customers sent, at most `budget` spent (EUR, the catalogue's
    channel cost per delivered action); `slots` replaces the campaign's send slots on this channel."""

    channel: str
    volume: int | None = Field(None, ge=0)
    budget: float | None = Field(None, ge=0)
    slots: tuple[time, ...] | None = None

    @field_validator("slots", mode="before")
    @classmethod
    def _slots(cls, raw: object) -> object:
        return [_time_of_day(v) for v in raw] if isinstance(raw, list | tuple) else raw


class SendRule(Frozen):
    """When a campaign's messages go out: candidate times of day (UTC) on one date. One slot is a fixed send time;
    several let each customer get the slot of highest priority (the request-time context -- hour, recency of
    signals -- is what the model and the policy see at that time)."""

    date: dt.date | None = None
    slots: tuple[time, ...] = (time(9, 0),)

    @field_validator("slots", mode="before")
    @classmethod
    def _slots(cls, raw: object) -> object:
        return [_time_of_day(v) for v in raw] if isinstance(raw, list | tuple) else raw

    @model_validator(mode="after")
    def _some(self) -> SendRule:
        if not self.slots:
            raise ValueError("send.slots: give at least one time of day (HH:MM, UTC)")
        return self


class CampaignSpec(Frozen):
    """A campaign (see the module docstring); `source` is the file it was read from."""

    id: str = Field(pattern=_NAME, max_length=64)
    description: str = ""
    # A segment of the project's `segments:` (None: the whole base, every entity known as of the date).
    segment: str | None = None
    channels: tuple[ChannelLimit, ...] = Field(min_length=1)
    # The catalogue actions the campaign may send (None: every marketing action, sales and retention).
    actions: tuple[str, ...] | None = None
    send: SendRule = SendRule()
    # The campaign's control group (None: the project's serving.assignment.campaign_control_share).
    control_share: float | None = Field(None, ge=0.0, lt=1.0)
    # Send only when priority - channel cost exceeds this (EUR): a contact must be worth what it costs.
    min_net_value: float = 0.0
    source: Path | None = None

    @model_validator(mode="after")
    def _unique(self) -> CampaignSpec:
        names = [c.channel for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channels: a channel is listed twice ({names})")
        return self

    def check_against(self, project: Project) -> None:
        """ConfigError naming the spec when it names a channel, action or segment the project does not know."""
        _serving, catalogue, _policy = project.decisions()
        where = self.source or self.id
        unknown = [c.channel for c in self.channels if c.channel not in catalogue.channels]
        if unknown:
            known = ", ".join(catalogue.channels)
            raise SpecError(where, "channels", f"unknown channel(s) {unknown}; the catalogue's: {known}")
        actions = self.action_ids(project)
        missing = sorted(set(actions) - set(catalogue.action_ids))
        if missing:
            known = ", ".join(catalogue.action_ids)
            raise SpecError(where, "actions", f"unknown action(s) {missing}; the catalogue's: {known}")
        offered = {a.id for a in catalogue.actions if set(a.channels) & {c.channel for c in self.channels}}
        if not set(actions) & offered:
            raise SpecError(where, "actions", "none of the campaign's actions is offered on its channels")
        if self.segment is not None:
            known = project.segments.names if project.segments is not None else ()
            if self.segment not in known:
                raise SpecError(
                    where,
                    "segment",
                    f"unknown segment {self.segment!r}; the project's segments: {', '.join(known) or 'none'}",
                )

    def action_ids(self, project: Project) -> tuple[str, ...]:
        """The actions the campaign may send (its list, else every marketing action of the catalogue)."""
        if self.actions is not None:
            return self.actions
        return tuple(a.id for a in project.decisions()[1].actions if a.kind in MARKETING_KINDS)

    def control(self, project: Project) -> float:
        share = self.control_share
        return project.decisions()[0].assignment.campaign_control_share if share is None else share


def parse_campaign(raw: object, where: str | Path) -> CampaignSpec:
    """Validate a campaign mapping; errors name `where` and the key."""
    if not isinstance(raw, dict):
        raise SpecError(where, "spec", "a campaign spec is a mapping (id, channels, ...)")
    if "source" in raw:
        raise SpecError(where, "source", "not a campaign field (id, description, segment, channels, actions, ...)")
    try:
        return CampaignSpec.model_validate({**raw, "source": where if isinstance(where, Path) else None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "spec"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SpecError(where, field, f"{message}{more}") from exc


def load_campaign(path: str | Path, project: Project | None = None) -> CampaignSpec:
    """Read and validate a campaign spec (YAML), checked against `project` when given."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise ConfigError(f"campaign spec {resolved} not found")
    try:
        raw = yaml.safe_load(resolved.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{resolved} is not valid YAML: {exc}") from exc
    spec = parse_campaign(raw, resolved)
    if project is not None:
        spec.check_against(project)
    return spec


def spec_yaml(spec: CampaignSpec) -> str:
    """The spec as YAML (what a run records beside its results)."""
    return yaml.safe_dump(spec.model_dump(mode="json", exclude={"source"}, exclude_none=True), sort_keys=False)


# -------------------------------------------------------------------- send times and candidates


@dataclass(frozen=True)
class Candidate:
    """One (channel, send time) the engine proposes for."""

    channel: str
    at: datetime
    cost: float


def send_date(spec: CampaignSpec, as_of: datetime | None, now: datetime | None = None) -> date:
    """The spec's date; else the as-of date; else today, or tomorrow when a slot of today has passed already."""
    if spec.send.date is not None:
        return spec.send.date
    if as_of is not None:
        return as_of.date()
    now = now or datetime.now(UTC)
    slots = [s for c in spec.channels for s in (c.slots or spec.send.slots)]
    today = now.date()
    return today if all(datetime.combine(today, s, UTC) > now for s in slots) else today + timedelta(days=1)


def candidates(spec: CampaignSpec, project: Project, day: date) -> list[Candidate]:
    """Every (channel, slot) of the campaign, channels in spec order, slots in time order."""
    catalogue = project.decisions()[1]
    out = []
    for limit in spec.channels:
        for slot in sorted(limit.slots or spec.send.slots):
            at = datetime.combine(day, slot, UTC)
            out.append(Candidate(limit.channel, at, catalogue.channel_cost(limit.channel)))
    return out


# -------------------------------------------------------------------- the audience's features


@dataclass(frozen=True)
class ViewRead:
    """One view the audience read covers: its offline table, key, timestamp, TTL and the fields read."""

    name: str
    path: Path
    key: str
    timestamp: str
    ttl: timedelta | None
    fields: Mapping[str, str]  # name -> "float64" | "int64"


def view_reads(features: FeatureProject, views: Sequence[str], fields: Mapping[str, Sequence[str]]) -> list[ViewRead]:
    """The offline tables of `views` with the fields read from each (`fields[view]`) and each view's TTL as
    registered in the project's Feast registry (what materialization uses)."""
    tables = {t.name: t for t in features.view_tables()}
    store = features.store()
    out = []
    for view in views:
        if view not in tables:
            raise ConfigError(f"project {features.project.name!r}: no offline table for view {view!r}")
        t = tables[view]
        ttl = store.get_feature_view(view).ttl
        wanted = {f: t.fields.get(f, "float64") for f in fields[view]}
        out.append(ViewRead(view, Path(t.path), t.key, t.timestamp, ttl or None, wanted))
    return out


def _view_sql(n: int, view: ViewRead, key: str) -> str:
    cols = []
    for name, kind in view.fields.items():
        # A missing float is NaN in the tables and an empty value in the online store (read as None): null here.
        expr = f"NULLIF(\"{name}\", 'NaN'::DOUBLE)" if kind == "float64" else f'"{name}"'
        cols.append(f'{expr} AS "{name}"')
    select = ", ".join([f'"{view.key}" AS "{key}"', *cols])
    return (
        f"v{n} AS (SELECT {select} FROM read_parquet($p{2 * n + 1}) "
        f'WHERE "{view.timestamp}" >= $p{2 * n + 2}::TIMESTAMPTZ - INTERVAL {_interval(view.ttl)} '
        f'AND "{view.timestamp}" <= $as_of '
        f'QUALIFY row_number() OVER (PARTITION BY "{view.key}" ORDER BY "{view.timestamp}" DESC) = 1)'
    )


def _interval(ttl: timedelta | None) -> str:
    # A view that never expires (ttl 0) is read from the epoch, as materialization does.
    seconds = int(ttl.total_seconds()) if ttl else 60 * 365 * 24 * 3600
    return f"'{seconds} seconds'"


def newest_row(reads: Sequence[ViewRead]) -> datetime:
    """The newest event time in the tables (the default as-of: what the last materialization loaded)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        parts = " UNION ALL ".join(f'SELECT max("{r.timestamp}") AS t FROM read_parquet(?)' for r in reads)
        value = con.execute(f"SELECT max(t) FROM ({parts})", [str(r.path) for r in reads]).fetchone()
    finally:
        con.close()
    if value is None or value[0] is None:
        raise DataError("the feature tables are empty: build and materialize the project's features first")
    newest = value[0]
    return newest.replace(tzinfo=UTC) if newest.tzinfo is None else newest.astimezone(UTC)


def read_audience(reads: Sequence[ViewRead], key: str, as_of: datetime) -> pa.Table:
    """Every entity's latest row of each view at or before `as_of` within the view's TTL, joined on the key: one
    Arrow table (key first, then each view's fields in order, nulls for missing values), sorted by key. Entities
    whose every field is null as of then (unknown at that date) are left out."""
    import duckdb

    for r in reads:
        if not r.path.is_file():
            raise DataError(f"feature table {r.path} missing: build the project's features first")
    fields: dict[str, int] = {}
    for n, r in enumerate(reads):
        for f in r.fields:
            fields[f] = n  # a field in two views: the later view's, as the online reader overlays them
    ctes = [_view_sql(n, r, key) for n, r in enumerate(reads)]
    keys = " UNION ".join(f'SELECT "{key}" FROM v{n}' for n in range(len(reads)))
    joins = " ".join(f'LEFT JOIN v{n} USING ("{key}")' for n in range(len(reads)))
    select = ", ".join([f'k."{key}"', *(f'v{n}."{f}"' for f, n in fields.items())])
    known = " OR ".join(f'v{n}."{f}" IS NOT NULL' for f, n in fields.items()) or "TRUE"
    sql = f'WITH {", ".join(ctes)}, k AS ({keys}) SELECT {select} FROM k {joins} WHERE {known} ORDER BY k."{key}"'
    params: dict[str, Any] = {"as_of": as_of}
    for n, r in enumerate(reads):
        params[f"p{2 * n + 1}"] = str(r.path)
        params[f"p{2 * n + 2}"] = as_of
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        table = con.sql(sql, params=params).to_arrow_table()
    finally:
        con.close()
    return table.combine_chunks() if hasattr(table, "combine_chunks") else table


# -------------------------------------------------------------------- proposals and the allocation


@dataclass
class Proposals:
    """The engine's dry-run proposal per (customer, candidate): the priority of the best action (NaN: none), its
    action (index into `actions`, -1: none), propensity, and price and band (the rate inside its approved band;
    NaN and '': unpriced)."""

    priority: np.ndarray  # (customers, candidates) float64
    action: np.ndarray  # (customers, candidates) int16
    propensity: np.ndarray  # (customers, candidates) float32
    actions: tuple[str, ...]
    price: np.ndarray  # (customers, candidates) float64
    band: np.ndarray  # (customers, candidates) object: the approved band's name ('': unpriced)

    @classmethod
    def empty(cls, customers: int, candidates: int, actions: Sequence[str]) -> Proposals:
        shape = (customers, candidates)
        return cls(
            np.full(shape, np.nan),
            np.full(shape, -1, np.int16),
            np.full(shape, np.nan, np.float32),
            tuple(actions),
            np.full(shape, np.nan),
            np.full(shape, "", dtype=object),
        )


@dataclass(frozen=True)
class Limit:
    """A channel's limits as the allocation applies them (None: unlimited)."""

    volume: int | None
    budget: float | None


@dataclass
class Allocation:
    """Per customer the chosen candidate (-1: none), and per candidate's channel what was used."""

    choice: np.ndarray  # (customers,) int32
    sent: dict[str, int]
    cost: dict[str, float]
    controls: dict[str, int]
    full: dict[str, bool]


def allocate(
    proposals: Proposals,
    cands: Sequence[Candidate],
    limits: Mapping[str, Limit],
    control: np.ndarray,
    min_net_value: float = 0.0,
    eligible: np.ndarray | None = None,
) -> Allocation:
    """Each customer's candidate of highest priority net of its channel's cost, channel limits given out by net value.

    Greedy over every proposed (customer, candidate) pair, best net value first (ties: higher priority, then the
    lower customer index, then the earlier candidate): a pair is taken when its customer has none yet, its net value
    exceeds `min_net_value` and its channel is not full. A treated customer uses one of the channel's volume and its
    cost of the budget; a `control` customer is admitted while the channel still admits (the control is drawn from
    the customers the campaign selects) but uses neither. `eligible` (default all) leaves customers out.
    """
    n, c = proposals.priority.shape
    costs = np.array([cand.cost for cand in cands], dtype=float)
    net = proposals.priority - costs[None, :]
    ok = ~np.isnan(proposals.priority) & (net > min_net_value)
    if eligible is not None:
        ok &= eligible[:, None]
    rows, cols = np.nonzero(ok)
    order = np.lexsort((cols, rows, -proposals.priority[rows, cols], -net[rows, cols]))
    channels = [cand.channel for cand in cands]
    out = Allocation(np.full(n, -1, np.int32), dict.fromkeys(limits, 0), dict.fromkeys(limits, 0.0),
                     dict.fromkeys(limits, 0), dict.fromkeys(limits, False))  # fmt: skip
    choice, sent, spent, full = out.choice, out.sent, out.cost, out.full
    for channel, limit in limits.items():
        full[channel] = limit.volume == 0
    open_channels = sum(not f for f in full.values())
    for i, j in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
        if choice[i] >= 0 or full[channels[j]]:
            continue
        channel = channels[j]
        limit = limits[channel]
        if control[i]:
            choice[i] = j
            out.controls[channel] += 1
            continue
        if limit.budget is not None and spent[channel] + costs[j] > limit.budget + 1e-9:
            full[channel] = True  # the next treated contact would overspend: the channel admits no one more
        else:
            choice[i] = j
            sent[channel] += 1
            spent[channel] += costs[j]
            full[channel] = limit.volume is not None and sent[channel] >= limit.volume
        if full[channel]:
            open_channels -= 1
            if open_channels == 0:
                break
    return out


def limits_of(spec: CampaignSpec) -> dict[str, Limit]:
    return {c.channel: Limit(c.volume, c.budget) for c in spec.channels}


# -------------------------------------------------------------------- the contact list


def contact_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The contact list (`CONTACT_COLUMNS`, one row per customer sent an action), from the decided rows."""
    frame = pd.DataFrame(list(rows), columns=list(CONTACT_COLUMNS))
    frame["send_time"] = pd.to_datetime(frame["send_time"], utc=True)
    return frame


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Parquet for a `.parquet` path, else CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def campaigns_dir(project: Project, settings: Settings) -> Path:
    """Where a project's campaign runs are recorded: `<project home>/campaigns/<id>/` (spec, runs, contact lists)."""
    return project.home(settings) / "campaigns"
