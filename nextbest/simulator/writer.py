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
    """All contract tables (sources and truth) for one chunk."""
    ep = config.start_epoch_seconds
    cid = pop.customer_id
    t = result.tables
    out: dict[str, pa.Table] = {}
    channels = table.channels

    # customers: the profile at signup, then one row per change (credit score after a shock, consent withdrawn)
    ch = t["profile_changes"]
    n0 = pop.n
    rows = np.concatenate([np.arange(n0), ch["row"]])
    valid = np.concatenate([pop.signup_s, ch["valid_from"]])
    credit = np.concatenate([t["start_state"]["credit"], ch["credit"]])
    consent = np.concatenate([t["start_state"]["consent"], ch["consent"].reshape(-1, len(P.CONSENT_COLUMNS))])
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
    out["customers"] = _build(SOURCE_SCHEMAS["customers"], cols)

    # holdings: closed with the relationship
    h = t["holdings"]
    close_s = np.full(n0, -1, dtype=np.int64)
    cl = t["closures"]
    close_s[cl["row"]] = cl["ts"]
    o = _order(cid[h["row"]], h["opened_s"], h["product"])
    hr = h["row"][o]
    hc = close_s[hr]
    out["holdings"] = _build(
        SOURCE_SCHEMAS["holdings"],
        {
            "customer_id": cid[hr],
            "product": _strings(h["product"][o], PRODUCTS),
            "opened_at": _ts(h["opened_s"][o], ep),
            "closed_at": _ts(np.where(hc >= 0, hc, 0), ep, mask=hc < 0),
            "amount": h["amount"][o],
        },
    )

    # big tables keep generation order (by day): already deterministic, and sorting millions of rows costs time
    b = t["balances"]
    o = slice(None)
    out["balances"] = _build(
        SOURCE_SCHEMAS["balances"],
        {
            "customer_id": cid[b["row"][o]],
            "as_of": _ts(b["as_of"][o], ep),
            "current_balance": b["current"][o],
            "savings_balance": b["savings"][o],
            "card_balance": b["card"][o],
            "loan_balance": b["loan"][o],
            "mortgage_balance": b["mortgage"][o],
            "investment_balance": b["investment"][o],
        },
    )

    x = t["transactions"]
    o = slice(None)
    out["transactions"] = _build(
        SOURCE_SCHEMAS["transactions"],
        {
            "transaction_id": x["transaction_id"][o],
            "customer_id": cid[x["row"][o]],
            "ts": _ts(x["ts"][o], ep),
            "amount": x["amount"][o],
            "direction": _strings(x["direction"][o], E.TX_DIRECTIONS),
            "category": _strings(x["category"][o], E.TX_CATEGORIES),
            "channel": _strings(x["channel"][o], E.TX_CHANNELS),
            "country": _strings(x["country"][o], E.COUNTRIES),
        },
    )

    g = t["digital_events"]
    o = slice(None)
    out["digital_events"] = _build(
        SOURCE_SCHEMAS["digital_events"],
        {
            "customer_id": cid[g["row"][o]],
            "ts": _ts(g["ts"][o], ep),
            "channel": _strings(g["channel"][o], ("app", "web")),
            "event_type": _strings(g["event_type"][o], ("login", "page_view")),
            "page": _strings(g["page"][o], E.PAGES),
        },
    )

    s = t["context_signals"]
    o = _order(s["ts"], cid[s["row"]], s["signal"])
    loc_of_signal = np.array([P.LOCATION_TYPES.index(P.SIGNAL_LOCATION[x]) for x in P.SIGNALS])
    out["context_signals"] = _build(
        SOURCE_SCHEMAS["context_signals"],
        {
            "customer_id": cid[s["row"][o]],
            "ts": _ts(s["ts"][o], ep),
            "signal": _strings(s["signal"][o], P.SIGNALS),
            "location_type": _strings(loc_of_signal[s["signal"][o]], P.LOCATION_TYPES),
        },
    )

    c = t["contacts"]
    o = _order(c["ts"], c["contact_id"])
    trig = c["trigger"][o]
    out["contacts"] = _build(
        SOURCE_SCHEMAS["contacts"],
        {
            "contact_id": c["contact_id"][o],
            "customer_id": cid[c["row"][o]],
            "ts": _ts(c["ts"][o], ep),
            "action_id": _strings(c["action"][o], table.ids),
            "channel": _strings(c["channel"][o], channels),
            "trigger": _strings(np.where(trig < 0, len(P.SIGNALS), trig), (*P.SIGNALS, "scheduled")),
            "location_type": _strings(c["location"][o], P.LOCATION_TYPES),
            "hour_of_day": c["hour"][o],
            "logging_propensity": c["propensity"][o],
            "n_eligible": c["n_eligible"][o],
            "outcome": _strings(c["outcome"][o], E.OUTCOMES),
            "outcome_ts": _ts(c["outcome_ts"][o], ep),
            "accepted": c["outcome"][o] == 0,
        },
    )

    o = _order(cl["ts"], cid[cl["row"]])
    out["closures"] = _build(
        SOURCE_SCHEMAS["closures"],
        {
            "customer_id": cid[cl["row"][o]],
            "closed_at": _ts(cl["ts"][o], ep),
            "reason": _strings(cl["reason"][o], E.CLOSURE_REASONS),
        },
    )

    # ---- truth
    it = t["intents"]
    o = _order(cid[it["row"]], it["start_s"], it["intent"])
    out["truth/intents"] = _build(
        TRUTH_SCHEMAS["intents"],
        {
            "customer_id": cid[it["row"][o]],
            "intent": _strings(it["intent"][o], P.INTENTS),
            "start_ts": _ts(it["start_s"][o], ep),
            "strength": it["strength"][o],
            "half_life_days": it["half"][o],
        },
    )
    ct = t["contact_truth"]
    o = np.argsort(ct["contact_id"], kind="stable")
    out["truth/contact_truth"] = _build(
        TRUTH_SCHEMAS["contact_truth"], {"contact_id": ct["contact_id"][o], "p_accept": ct["p_accept"][o]}
    )
    hz = t["churn_hazard"]
    o = slice(None)
    out["truth/churn_hazard"] = _build(
        TRUTH_SCHEMAS["churn_hazard"],
        {
            "customer_id": cid[hz["row"][o]],
            "date": _ts(hz["day"][o] * P.SECONDS_PER_DAY, ep),
            "hazard": hz["hazard"][o],
        },
    )
    lat: dict[str, object] = {"customer_id": cid}
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
    out["truth/customer_latent"] = _build(latent_schema(channels), lat)
    return out


def write_chunk(tables: dict[str, pa.Table], staging: Path, chunk_index: int) -> dict[str, int]:
    """Write every table's part for this chunk under `staging`; returns rows written per table."""
    counts: dict[str, int] = {}
    for name, tbl in tables.items():
        folder = staging / name if name.startswith("truth/") else staging / "sources" / name
        write_table(tbl, folder / f"part-{chunk_index:05d}.parquet")
        counts[name] = tbl.num_rows
    return counts
