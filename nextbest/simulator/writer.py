"""Turns one chunk's arrays into contract tables and writes them as deterministic parquet parts.

Determinism: columns are built from numpy arrays (no pandas metadata), small tables are sorted by a total order and
the big ones keep their (deterministic, day by day) generation order, row groups have a fixed size and nothing
time-dependent enters the file, so the same world gives the same bytes. Every table is a folder of parts, one per
customer chunk: `sources/transactions/part-00000.parquet`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nextbest.catalogue import PRODUCTS, RISK_BANDS, SEGMENTS
from nextbest.simulator import engine as E
from nextbest.simulator import params as P
from nextbest.simulator.config import SimulationConfig
from nextbest.simulator.engine import ChunkResult
from nextbest.simulator.population import Population, risk_band
from nextbest.simulator.propensity import ActionTable
from nextbest.simulator.schema import SOURCE_SCHEMAS, TRUTH_SCHEMAS, latent_schema

ROW_GROUP_SIZE = 1_000_000
Rows = dict[str, np.ndarray]  # one table's columns as the engine produced them


def _strings(codes: np.ndarray, names: tuple[str, ...] | list[str]) -> pa.Array:
    """Category codes to a dictionary-encoded string column (-1 -> null).

    Parquet stores it as a plain string column (files are written without the Arrow schema), so every reader sees
    `string`, and the writer never materialises millions of strings only to dictionary-encode them again.
    """
    codes = np.asarray(codes)
    mask = codes < 0
    indices = np.where(mask, 0, codes).astype(np.int32) if mask.any() else codes.astype(np.int32)
    return pa.DictionaryArray.from_arrays(
        pa.array(indices, mask=mask if mask.any() else None), pa.array(list(names), pa.string())
    )


def _ts(seconds: np.ndarray, epoch: int, mask: np.ndarray | None = None) -> pa.Array:
    us = (np.asarray(seconds, dtype=np.int64) + epoch) * 1_000_000
    # int64 -> timestamp by view: pa.array(..., type=timestamp with tz) takes a slow per-value path
    return pa.array(us, type=pa.int64(), mask=mask).view(pa.timestamp("us", tz="UTC"))


def write_table(table: pa.Table, path: Path) -> None:
    """Write one parquet part deterministically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table,
        path,
        row_group_size=ROW_GROUP_SIZE,
        compression="snappy",
        # dictionary pages for the string columns and the customer key only: ids, times and amounts are near-unique,
        # and trying to dictionary-encode them costs a quarter of the write time for nothing
        use_dictionary=[f.name for f in table.schema if pa.types.is_dictionary(f.type) or f.name == "customer_id"],
        # min/max statistics where readers filter (keys and times); amounts and codes do not need them
        write_statistics=[f.name for f in table.schema if f.name.endswith("_id") or pa.types.is_timestamp(f.type)],
        store_schema=False,  # readers get plain `string` (not dictionary) columns and UTC timestamps from parquet
    )


def _build(schema: pa.Schema, columns: dict[str, object]) -> pa.Table:
    """A table with the contract's column order; string columns stay dictionary-encoded until written."""
    arrays = []
    for f in schema:
        col = columns[f.name]
        arrays.append(col if isinstance(col, pa.Array) else pa.array(col, type=f.type))
    return pa.Table.from_arrays(arrays, names=schema.names)


def _order(*keys: np.ndarray) -> np.ndarray:
    """Row order sorting by the first key, then the next (np.lexsort takes keys last-first)."""
    return np.lexsort(tuple(reversed(keys)))


def chunk_tables(
    result: ChunkResult, pop: Population, config: SimulationConfig, table: ActionTable
) -> dict[str, pa.Table]:
    """All contract tables (sources and truth) for one chunk (or the rows a stepped day added, without `start_state`:
    the customers table then holds only the profile changes)."""
    ep = config.start_epoch_seconds
    cid = pop.customer_id
    t = result.tables
    return {
        "customers": _customers(t["profile_changes"], t.get("start_state"), pop, ep, table.channels),
        "holdings": _holdings(t["holdings"], t["closures"], cid, ep),
        "balances": _balances(t["balances"], cid, ep),
        "transactions": _transactions(t["transactions"], cid, ep),
        "digital_events": _digital_events(t["digital_events"], cid, ep),
        "context_signals": _context_signals(t["context_signals"], cid, ep),
        "contacts": _contacts(t["contacts"], cid, ep, table),
        "closures": _closures(t["closures"], cid, ep),
        "complaints": _complaints(t["complaints"], cid, ep, table),
        # ---- truth
        "truth/intents": _intents(t["intents"], cid, ep),
        "truth/contact_truth": _contact_truth(t["contact_truth"]),
        "truth/churn_hazard": _churn_hazard(t["churn_hazard"], cid, ep),
        "truth/customer_latent": _customer_latent(pop, table.channels),
    }


def _customers(ch: Rows, start: Rows | None, pop: Population, ep: int, channels: tuple[str, ...]) -> pa.Table:
    """customers: the profile at signup, then one row per change (credit score after a shock, consent withdrawn).

    Without `start` only the change rows (a day's rows of a stepped world)."""
    cid = pop.customer_id
    changed = ch["consent"].reshape(-1, len(P.CONSENT_COLUMNS))
    if start is None:
        rows, valid, credit, consent = ch["row"], ch["valid_from"], ch["credit"], changed
    else:
        rows = np.concatenate([np.arange(pop.n), ch["row"]])
        valid = np.concatenate([pop.signup_s, ch["valid_from"]])
        credit = np.concatenate([start["credit"], ch["credit"]])
        consent = np.concatenate([start["consent"], changed])
    o = _order(cid[rows], valid)
    rows, valid, credit, consent = rows[o], valid[o], credit[o], consent[o]
    cols: dict[str, object] = {
        "customer_id": cid[rows],
        "valid_from": _ts(valid, ep),
        "birth_year": pop.birth_year[rows],
        "region": _strings(pop.region[rows], P.REGIONS),
        "segment": _strings(pop.segment[rows], SEGMENTS),
        "income_monthly": pop.income[rows],
        "credit_score": credit,
        "risk_band": _strings(risk_band(credit), RISK_BANDS),
        "vulnerable": pop.vulnerable[rows],
        "digital_first": pop.digital_first[rows],
        "preferred_channel": _strings(pop.preferred_channel[rows], channels),
        "signup_date": _ts(pop.signup_s[rows], ep),
    }
    for i, c in enumerate(P.CONSENT_COLUMNS):
        cols[c] = consent[:, i]
    return _build(SOURCE_SCHEMAS["customers"], cols)


def _holdings(h: Rows, cl: Rows, cid: np.ndarray, ep: int) -> pa.Table:
    """holdings: closed with the relationship."""
    close_s = np.full(len(cid), -1, dtype=np.int64)
    close_s[cl["row"]] = cl["ts"]
    o = _order(cid[h["row"]], h["opened_s"], h["product"])
    hr = h["row"][o]
    hc = close_s[hr]
    return _build(
        SOURCE_SCHEMAS["holdings"],
        {
            "customer_id": cid[hr],
            "product": _strings(h["product"][o], PRODUCTS),
            "opened_at": _ts(h["opened_s"][o], ep),
            "closed_at": _ts(np.where(hc >= 0, hc, 0), ep, mask=hc < 0),
            "amount": h["amount"][o],
        },
    )


# The big tables (balances, transactions, digital events, churn hazard) keep generation order (by day): already
# deterministic, and sorting millions of rows costs time.


def _balances(b: Rows, cid: np.ndarray, ep: int) -> pa.Table:
    """balances: statement-day snapshots, in generation order."""
    return _build(
        SOURCE_SCHEMAS["balances"],
        {
            "customer_id": cid[b["row"]],
            "as_of": _ts(b["as_of"], ep),
            "current_balance": b["current"],
            "savings_balance": b["savings"],
            "card_balance": b["card"],
            "loan_balance": b["loan"],
            "mortgage_balance": b["mortgage"],
            "investment_balance": b["investment"],
        },
    )


def _transactions(x: Rows, cid: np.ndarray, ep: int) -> pa.Table:
    """transactions, in generation order."""
    return _build(
        SOURCE_SCHEMAS["transactions"],
        {
            "transaction_id": x["transaction_id"],
            "customer_id": cid[x["row"]],
            "ts": _ts(x["ts"], ep),
            "amount": x["amount"],
            "direction": _strings(x["direction"], E.TX_DIRECTIONS),
            "category": _strings(x["category"], E.TX_CATEGORIES),
            "channel": _strings(x["channel"], E.TX_CHANNELS),
            "country": _strings(x["country"], E.COUNTRIES),
        },
    )


def _digital_events(g: Rows, cid: np.ndarray, ep: int) -> pa.Table:
    """digital_events (logins and page views), in generation order."""
    return _build(
        SOURCE_SCHEMAS["digital_events"],
        {
            "customer_id": cid[g["row"]],
            "ts": _ts(g["ts"], ep),
            "channel": _strings(g["channel"], ("app", "web")),
            "event_type": _strings(g["event_type"], ("login", "page_view")),
            "page": _strings(g["page"], E.PAGES),
        },
    )


def _context_signals(s: Rows, cid: np.ndarray, ep: int) -> pa.Table:
    """context_signals, by time, customer and signal, with the location type each signal implies."""
    o = _order(s["ts"], cid[s["row"]], s["signal"])
    loc_of_signal = np.array([P.LOCATION_TYPES.index(P.SIGNAL_LOCATION[x]) for x in P.SIGNALS])
    return _build(
        SOURCE_SCHEMAS["context_signals"],
        {
            "customer_id": cid[s["row"][o]],
            "ts": _ts(s["ts"][o], ep),
            "signal": _strings(s["signal"][o], P.SIGNALS),
            "location_type": _strings(loc_of_signal[s["signal"][o]], P.LOCATION_TYPES),
        },
    )


def _contacts(c: Rows, cid: np.ndarray, ep: int, table: ActionTable) -> pa.Table:
    """contacts (the logging policy's decisions and their outcomes), by time and contact id."""
    o = _order(c["ts"], c["contact_id"])
    trig = c["trigger"][o]
    return _build(
        SOURCE_SCHEMAS["contacts"],
        {
            "contact_id": c["contact_id"][o],
            "customer_id": cid[c["row"][o]],
            "ts": _ts(c["ts"][o], ep),
            "action_id": _strings(c["action"][o], table.ids),
            "channel": _strings(c["channel"][o], table.channels),
            "trigger": _strings(np.where(trig < 0, len(P.SIGNALS), trig), (*P.SIGNALS, "scheduled")),
            "location_type": _strings(c["location"][o], P.LOCATION_TYPES),
            "hour_of_day": c["hour"][o],
            "logging_propensity": c["propensity"][o],
            "n_eligible": c["n_eligible"][o],
            "outcome": _strings(c["outcome"][o], E.OUTCOMES),
            "outcome_ts": _ts(c["outcome_ts"][o], ep),
            "accepted": c["outcome"][o] == 0,
            "offered_price": pa.array(c["price"][o], type=pa.float64(), mask=~np.isfinite(c["price"][o])),
        },
    )


def _closures(cl: Rows, cid: np.ndarray, ep: int) -> pa.Table:
    """closures, by time and customer."""
    o = _order(cl["ts"], cid[cl["row"]])
    return _build(
        SOURCE_SCHEMAS["closures"],
        {
            "customer_id": cid[cl["row"][o]],
            "closed_at": _ts(cl["ts"][o], ep),
            "reason": _strings(cl["reason"][o], E.CLOSURE_REASONS),
        },
    )


def _complaints(cm: Rows, cid: np.ndarray, ep: int, table: ActionTable) -> pa.Table:
    """complaints: every complaint, about the service or about a marketing contact (with its channel and id)."""
    o = _order(cm["ts"], cid[cm["row"]], cm["cause"])
    contact = cm["contact_id"][o]
    return _build(
        SOURCE_SCHEMAS["complaints"],
        {
            "customer_id": cid[cm["row"][o]],
            "ts": _ts(cm["ts"][o], ep),
            "cause": _strings(cm["cause"][o], E.COMPLAINT_CAUSES),
            "channel": _strings(cm["channel"][o], table.channels),
            "contact_id": pa.array(np.where(contact < 0, 0, contact), type=pa.int64(), mask=contact < 0),
        },
    )


def _intents(it: Rows, cid: np.ndarray, ep: int) -> pa.Table:
    """truth/intents: every life event, by customer, start and intent."""
    o = _order(cid[it["row"]], it["start_s"], it["intent"])
    return _build(
        TRUTH_SCHEMAS["intents"],
        {
            "customer_id": cid[it["row"][o]],
            "intent": _strings(it["intent"][o], P.INTENTS),
            "start_ts": _ts(it["start_s"][o], ep),
            "strength": it["strength"][o],
            "half_life_days": it["half"][o],
        },
    )


def _contact_truth(ct: Rows) -> pa.Table:
    """truth/contact_truth: per contact, the true p_accept, p_organic and expected opt-out / complaint, by id."""
    o = np.argsort(ct["contact_id"], kind="stable")
    return _build(TRUTH_SCHEMAS["contact_truth"], {k: ct[k][o] for k in TRUTH_SCHEMAS["contact_truth"].names})


def _churn_hazard(hz: Rows, cid: np.ndarray, ep: int) -> pa.Table:
    """truth/churn_hazard: the true daily hazard on the cadence days, in generation order."""
    return _build(
        TRUTH_SCHEMAS["churn_hazard"],
        {
            "customer_id": cid[hz["row"]],
            "date": _ts(hz["day"] * P.SECONDS_PER_DAY, ep),
            "hazard": hz["hazard"],
        },
    )


def _customer_latent(pop: Population, channels: tuple[str, ...]) -> pa.Table:
    """truth/customer_latent: the latent traits, one row per customer."""
    lat: dict[str, object] = {"customer_id": pop.customer_id}
    for j, p in enumerate(PRODUCTS):
        lat[f"affinity_{p}"] = pop.affinity[:, j]
    lat.update(
        price_sensitivity=pop.price_sensitivity,
        fatigue_sensitivity=pop.fatigue_sensitivity,
        churn_propensity=pop.churn_propensity,
        engagement=pop.engagement,
        spend_level=pop.spend_level,
        travel_propensity=pop.travel_propensity,
    )
    for j, chn in enumerate(channels):
        lat[f"channel_affinity_{chn}"] = pop.channel_affinity[:, j]
    return _build(latent_schema(channels), lat)


def write_chunk(tables: dict[str, pa.Table], staging: Path, chunk_index: int) -> dict[str, int]:
    """Write every table's part for this chunk under `staging`; returns rows written per table."""
    counts: dict[str, int] = {}
    for name, tbl in tables.items():
        folder = staging / name if name.startswith("truth/") else staging / "sources" / name
        write_table(tbl, folder / f"part-{chunk_index:05d}.parquet")
        counts[name] = tbl.num_rows
    return counts
