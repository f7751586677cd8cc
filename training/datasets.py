"""Training sets built only through Feast point-in-time retrieval, and the time-based splits every model uses.

What this module decides (and the feature repo does not): WHICH entity rows and labels a model learns from.
- Churn: one row per (alive customer, snapshot date), snapshots every `snapshot_every_days` at 00:00 UTC after a
  warm-up; label = the relationship closes within H days after the snapshot. Only snapshots whose horizon ends
  inside the world are kept, so no label is censored.
- NBA: one row per logged contact at its decision time (customer, action, channel, context), label = accepted;
  `contact_id`, `logging_propensity` and `n_eligible` ride along (never features) for off-policy evaluation.
Features come from the model's Feast feature service at each row's time: `store.get_historical_features`, or by
default the same join read from the Feast registry as DuckDB ASOF joins, which returns the same rows faster
(`settings.features.offline_retrieval`, nextbest/features/point_in_time.py, docs/benchmarks.md); it never computes a
feature itself (the NBA action attributes come from the feature repo's helper too).
Erased customers (the project's tombstones, `nextbest.erasure`) are never entity rows.

Splits are by time: train (oldest) / validation (early stopping + calibration) / test (most recent, the gate's
holdout). Boundaries are row quantiles of the timestamp; rows sharing a timestamp never straddle a boundary, and
an optional gap (e.g. the churn horizon) purges rows whose label window would reach into the next split. The
default is no gap: the default 120-day world has 9-10 weekly churn snapshots and a 30-day purge on both boundaries
leaves no validation split. Feature times stay strictly ordered either way (`assert_time_ordered`), but churn
labels of the last training snapshots overlap the validation period, which flatters validation AUC (measured on
the 3,000 x 120 world: 0.77 validation vs 0.64 test); the test split, the gate's holdout, is the honest figure.

Rows whose label is only known some time after the row (churn: "closes within H days" is known at t + H) carry
`label_known_at`, and the trainer's time split of such a frame is `label_known_split`: the test split is the same
most recent rows, but train and validation hold only rows whose label was known at the test split's start, and
validation is a seeded share of the customers, never the same customer on both sides. A plain time split let
the model learn the test labels: one closure labels its customer positive at every weekly snapshot of the H days
before it, a customer's features barely move from one week to the next, and the refit on train + validation saw
the snapshots just before the test split. On the default world (seed 42) 146 of the 222 test churners were
positives of the refit rows, the model ranked them at AUC 0.97 against the negatives (the other churners at
0.56) and its test AUC, 0.859, beat the Bayes-optimal 0.767 of the same rows (docs/evaluation.md).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from nextbest.errors import DataError, NotReadyError
from nextbest.project import Project, project_of
from nextbest.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

    from nextbest.features.point_in_time import RetrievalMethod

logger = logging.getLogger(__name__)

LABEL = "label"
TIMESTAMP = "event_timestamp"
#: when a row's label became known (churn: snapshot + horizon); rides along, never a feature (`label_known_split`)
LABEL_KNOWN = "label_known_at"
#: the labels the simulated bank's builders make (a genome model's `label` in its project file)
CLOSES_WITHIN = "closes_within"
OFFER_ACCEPTED = "offer_accepted"
# Columns of the NBA set kept beside the features for off-policy evaluation and analysis; never model inputs.
NBA_META = ["contact_id", "action_id", "channel", "trigger", "location_type", "logging_propensity", "n_eligible"]


@dataclass(frozen=True)
class TrainingSet:
    """A labelled frame: entity/meta columns, `feature_names` columns, `label` (0/1) and `event_timestamp`."""

    model: str
    frame: pd.DataFrame
    feature_names: list[str]
    lineage: dict[str, Any] = field(default_factory=dict)
    label: str = LABEL
    timestamp: str = TIMESTAMP
    # What the label means (`ModelSpec.label`): `offer_accepted` rows are logged offers, weighted and valued as such.
    kind: str = ""

    def __post_init__(self) -> None:
        missing = [c for c in (*self.feature_names, self.label, self.timestamp) if c not in self.frame.columns]
        if missing:
            raise DataError(f"{self.model} training set lacks column(s): {', '.join(missing)}")
        if not self.feature_names:
            raise DataError(f"{self.model} training set has no features")

    def without_features(self, names: list[str] | tuple[str, ...]) -> TrainingSet:
        """A copy that does not use `names` as features (prefix match with a trailing `*`), e.g. for ablations."""
        drop = {f for f in self.feature_names for n in names if (f == n or (n.endswith("*") and f.startswith(n[:-1])))}
        unknown = [n for n in names if not n.endswith("*") and n not in self.feature_names]
        if unknown:
            raise DataError(f"cannot exclude unknown feature(s): {', '.join(unknown)}")
        kept = [f for f in self.feature_names if f not in drop]
        lineage = {**self.lineage, "excluded_features": sorted(drop)}
        return replace(self, feature_names=kept, lineage=lineage)


@dataclass(frozen=True)
class Splits:
    """Time-ordered train / validation / test frames and where the boundaries fell."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    timestamp: str = TIMESTAMP

    def ranges(self) -> dict[str, dict[str, Any]]:
        """Per split: rows, first and last timestamp, positive rate (for lineage and logs)."""
        out = {}
        for name, part in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            out[name] = {
                "rows": len(part),
                "start": str(part[self.timestamp].min()),
                "end": str(part[self.timestamp].max()),
                "positive_rate": float(part[LABEL].mean()) if LABEL in part and len(part) else float("nan"),
            }
        return out


def assert_time_ordered(splits: Splits) -> None:
    """Raise DataError unless every train time < every validation time < every test time."""
    ts = splits.timestamp
    pairs = (("train", splits.train, "valid", splits.valid), ("valid", splits.valid, "test", splits.test))
    for a_name, a, b_name, b in pairs:
        if len(a) and len(b) and not a[ts].max() < b[ts].min():
            raise DataError(f"time split overlap: {a_name} ends {a[ts].max()} >= {b_name} starts {b[ts].min()}")


def time_split(
    frame: pd.DataFrame,
    timestamp: str = TIMESTAMP,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    gap: timedelta = timedelta(0),
    label: str | None = LABEL,
) -> Splits:
    """Split by time at row quantiles: oldest -> train, then validation, most recent -> test.

    `gap` drops train rows within `gap` before the validation start and validation rows within `gap` before the
    test start (purging label windows that would overlap the next split). With `label` set, train and validation
    must each hold both classes, otherwise the world is too small for this split (DataError says so).
    """
    t1, t2 = _time_boundaries(frame, timestamp, valid_fraction, test_fraction)
    ts = frame[timestamp]
    unique = np.sort(ts.unique())
    gap_td = pd.Timedelta(gap)
    train = frame[ts < t1 - gap_td] if gap_td > pd.Timedelta(0) else frame[ts < t1]
    valid = frame[(ts >= t1) & (ts < t2 - gap_td)] if gap_td > pd.Timedelta(0) else frame[(ts >= t1) & (ts < t2)]
    test = frame[ts >= t2]
    splits = Splits(train=train, valid=valid, test=test, timestamp=timestamp)
    for name, part in (("train", train), ("validation", valid), ("test", test)):
        if part.empty:
            raise DataError(f"{name} split is empty (gap {gap} too large for {unique.size} timestamps?)")
    if label is not None:
        for name, part in (("train", train), ("validation", valid)):
            if part[label].nunique() < 2:
                raise DataError(f"{name} split holds one class only; simulate a larger or longer world")
    assert_time_ordered(splits)
    logger.info(
        "time split: train %d rows < %s <= valid %d rows < %s <= test %d rows",
        len(train),
        t1,
        len(valid),
        t2,
        len(test),
    )
    return splits


def _time_boundaries(
    frame: pd.DataFrame, timestamp: str, valid_fraction: float, test_fraction: float
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(validation start, test start) at row quantiles of the timestamp, snapped to distinct timestamps so equal
    times land in one split, at least one time per split."""
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise DataError("valid_fraction and test_fraction must be in (0, 1) and sum to less than 1")
    if timestamp not in frame.columns:
        raise DataError(f"frame has no timestamp column {timestamp!r}")
    ts = frame[timestamp]
    unique = np.sort(ts.unique())
    if unique.size < 3:
        raise DataError(f"need at least 3 distinct timestamps to split by time, found {unique.size}")
    sorted_ts = np.sort(ts.to_numpy())
    b1 = sorted_ts[min(int(len(sorted_ts) * (1 - valid_fraction - test_fraction)), len(sorted_ts) - 1)]
    b2 = sorted_ts[min(int(len(sorted_ts) * (1 - test_fraction)), len(sorted_ts) - 1)]
    i1 = int(np.clip(np.searchsorted(unique, b1), 1, unique.size - 2))
    i2 = int(np.clip(np.searchsorted(unique, b2), i1 + 1, unique.size - 1))
    return pd.Timestamp(unique[i1]), pd.Timestamp(unique[i2])


def label_known_split(
    frame: pd.DataFrame,
    timestamp: str = TIMESTAMP,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    *,
    entity: str = "customer_id",
    seed: int = 0,
    gap: timedelta = timedelta(0),
    label: str = LABEL,
) -> Splits:
    """The time split of rows whose label is known only later (`LABEL_KNOWN`, e.g. churn's snapshot + horizon).

    Test: the same most recent rows as `time_split`. Train and validation: only rows whose label was known at the
    test split's start (what a bank retraining that day would have), less `gap`; validation is a seeded share of
    those rows' entities (valid_fraction / (1 - test_fraction) of them), so no customer is on both sides. Train
    and validation overlap in time, on purpose: with a 30-day horizon, weekly snapshots and a 120-day world, a
    time-ordered validation whose labels are known before it starts leaves no rows at all.
    """
    if LABEL_KNOWN not in frame.columns or entity not in frame.columns:
        raise DataError(f"a label-known split needs the columns {LABEL_KNOWN!r} and {entity!r}")
    t1, t2 = _time_boundaries(frame, timestamp, valid_fraction, test_fraction)
    ts, known_at = frame[timestamp], frame[LABEL_KNOWN]
    test = frame[ts >= t2]
    known = frame[(known_at <= t2) & (ts < t2 - pd.Timedelta(gap))]
    if known.empty:
        raise DataError(
            f"no row's label is known at the test split's start {t2}: simulate a longer world or use a shorter horizon"
        )
    ids = np.unique(known[entity].to_numpy())
    n_valid = int(np.clip(round(len(ids) * valid_fraction / (1 - test_fraction)), 1, max(len(ids) - 1, 1)))
    held = np.random.default_rng(seed).choice(ids, size=n_valid, replace=False)
    in_valid = known[entity].isin(held)
    splits = Splits(train=known[~in_valid], valid=known[in_valid], test=test, timestamp=timestamp)
    for name, part in (("train", splits.train), ("validation", splits.valid), ("test", test)):
        if part.empty:
            raise DataError(f"{name} split is empty: simulate a larger or longer world")
    for name, part in (("train", splits.train), ("validation", splits.valid)):
        if part[label].nunique() < 2:
            raise DataError(f"{name} split holds one class only; simulate a larger or longer world")
    assert_labels_known(splits, entity)
    logger.info(
        "label-known split: train %d rows / valid %d rows (%d customers), labels known by %s <= test %d rows "
        "(%d rows whose label was not yet known left out; validation start by quantile would be %s)",
        len(splits.train),
        len(splits.valid),
        n_valid,
        t2,
        len(test),
        int((ts < t2).sum()) - len(known),
        t1,
    )
    return splits


def assert_labels_known(splits: Splits, entity: str = "customer_id") -> None:
    """Raise DataError unless every train and validation label was known when the test split starts, and no entity
    is in both train and validation (the leak `label_known_split` closes)."""
    start = splits.test[splits.timestamp].min()
    for name, part in (("train", splits.train), ("validation", splits.valid)):
        if len(part) and part[LABEL_KNOWN].max() > start:
            latest = part[LABEL_KNOWN].max()
            raise DataError(f"{name} holds labels known only at {latest}, after the test split's start {start}")
    shared = np.intersect1d(splits.train[entity].to_numpy(), splits.valid[entity].to_numpy())
    if shared.size:
        raise DataError(f"{shared.size} {entity}(s) in both train and validation, e.g. {shared[0]}")


SplitMethod = Literal["time", "stratified"]


def stratified_split(
    frame: pd.DataFrame,
    timestamp: str = TIMESTAMP,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    label: str = LABEL,
) -> Splits:
    """Seeded random train / validation / test split with each class's share kept in every part.

    For small outcome-labelled sets (one row per entity, e.g. a loan at its grant date, labelled by its final
    status) a time split can leave one or two positives for early stopping, calibration and the gate: Berka's
    default model had ONE bad loan in its validation split. Rows are independent entities there, so a stratified
    split is honest; it is NOT for snapshot sets where one entity has many rows (use the time split).
    """
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise DataError("valid_fraction and test_fraction must be in (0, 1) and sum to less than 1")
    if label not in frame.columns:
        raise DataError(f"frame has no label column {label!r}")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    y = frame[label].to_numpy()
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_test = int(round(len(idx) * test_fraction))
        n_valid = int(round(len(idx) * valid_fraction))
        parts["test"].append(idx[:n_test])
        parts["valid"].append(idx[n_test : n_test + n_valid])
        parts["train"].append(idx[n_test + n_valid :])
    # Row order inside each part follows the frame (deterministic, time-ordered if the frame is).
    train, valid, test = (frame.iloc[np.sort(np.concatenate(parts[k]))] for k in ("train", "valid", "test"))
    for name, part in (("train", train), ("validation", valid), ("test", test)):
        if part[label].nunique() < 2:
            raise DataError(f"{name} split holds one class only: too few positives for a stratified split")
    logger.info(
        "stratified split (seed %d): train %d / valid %d / test %d rows", seed, len(train), len(valid), len(test)
    )
    return Splits(train=train, valid=valid, test=test, timestamp=timestamp)


def split_training_frame(
    frame: pd.DataFrame,
    timestamp: str = TIMESTAMP,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    *,
    method: SplitMethod = "time",
    seed: int = 0,
    gap: timedelta = timedelta(0),
    entity: str | None = None,
) -> Splits:
    """The trainer's split: by time (default, with an optional purge gap) or stratified at random (seeded). A frame
    with `LABEL_KNOWN` (churn, an onboarded `event_within` label whose windows reach the next snapshot) is split by
    `label_known_split`: train and validation only from labels known before the test split, validation by entity
    (`entity`, default the frame's `attrs["entity_key"]` an onboarded set records, else `customer_id`)."""
    if method == "stratified":
        if gap:
            raise DataError("a purge gap applies to the time split only")
        return stratified_split(frame, timestamp, valid_fraction, test_fraction, seed=seed)
    if LABEL_KNOWN in frame.columns:
        entity = entity or frame.attrs.get("entity_key") or "customer_id"
        return label_known_split(frame, timestamp, valid_fraction, test_fraction, entity=entity, seed=seed, gap=gap)
    return time_split(frame, timestamp, valid_fraction, test_fraction, gap=gap)


# ---------------------------------------------------------------------------------------------------------------
# Sources and world metadata


def read_source(settings: Settings, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """One source table of the data contract (a parquet file or a folder of parquet parts)."""
    base = settings.sources_dir
    for candidate in (base / f"{table}.parquet", base / table):
        if candidate.exists():
            return pd.read_parquet(candidate, columns=columns)
    raise NotReadyError(f"source table {table!r} not found under {base}; run `nextbest simulate` first")


def world_info(settings: Settings) -> dict[str, Any]:
    """`truth/world.json` of a simulated world, or {} for a bank's own data."""
    path = settings.truth_dir / "world.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc


def _as_utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def world_window(settings: Settings) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(start, end) of the data: from world.json when simulated, else from the balances' statement dates."""
    info = world_info(settings)
    start = info.get("start_date") or info.get("start")
    days = info.get("days")
    if start is not None and info.get("end_ts"):
        return _as_utc(start).normalize(), _as_utc(info["end_ts"])
    if start is not None and days is not None:
        start_ts = _as_utc(start).normalize()
        return start_ts, start_ts + pd.Timedelta(days=int(days))
    balances = read_source(settings, "balances", ["as_of"])
    if balances.empty:
        raise DataError("balances table is empty: cannot tell the data window")
    return _as_utc(balances["as_of"].min()).normalize(), _as_utc(balances["as_of"].max())


def _feature_columns(
    frame: pd.DataFrame, exclude: set[str], declared: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """Model inputs: the service's declared features (or all non-excluded columns) that are numeric/bool.

    Returns (features, dropped); dropped columns (non-numeric, or returned by Feast but not declared as model
    inputs, such as the raw last-event timestamps the on-demand view turns into recency) go to the lineage.
    """
    kept: list[str] = []
    dropped: list[str] = []
    if declared is not None:
        missing = [c for c in declared if c not in frame.columns]
        if missing:
            raise DataError(f"Feast returned no column(s) {', '.join(missing[:10])} of the feature service")
        undeclared = [c for c in frame.columns if c not in exclude and c not in declared]
        if undeclared:
            logger.debug("columns returned by Feast but not model inputs: %s", ", ".join(undeclared))
        dropped.extend(undeclared)
    non_numeric: list[str] = []
    for col in declared if declared is not None else frame.columns:
        if col in exclude:
            continue
        dtype = frame[col].dtype
        if pd.api.types.is_bool_dtype(dtype) or (
            pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_datetime64_any_dtype(dtype)
        ):
            kept.append(col)
        else:
            non_numeric.append(col)
    if non_numeric:
        logger.warning("not using non-numeric feature column(s) as model inputs: %s", ", ".join(non_numeric))
    return kept, dropped + non_numeric


def _retrieve(
    store: FeatureStore, service_name: str, entity_df: pd.DataFrame, method: RetrievalMethod = "asof"
) -> pd.DataFrame:
    """Point-in-time join of the model's Feast feature service (the ONLY way features enter training): by
    `method` (`settings.features.offline_retrieval`), Feast's `get_historical_features` or the same join read from
    the Feast registry as DuckDB ASOF joins, which gives the same rows (`nextbest.features.point_in_time`)."""
    from nextbest.features.point_in_time import historical_features

    try:
        service = store.get_feature_service(service_name)
    except Exception as exc:  # feast raises its own not-found types, which vary by version
        raise NotReadyError(
            f"feature service {service_name!r} not in the Feast registry; run `nextbest features apply`"
        ) from exc
    return historical_features(store, entity_df, service, method)


# ---------------------------------------------------------------------------------------------------------------
# Churn


def churn_entity_frame(
    customers: pd.DataFrame,
    closures: pd.DataFrame,
    world_start: datetime,
    world_end: datetime,
    horizon_days: int,
    snapshot_every_days: int = 7,
    warmup_days: int = 28,
) -> pd.DataFrame:
    """(customer_id, event_timestamp, label) for every customer alive at each snapshot; pure, no I/O.

    Alive at t: signed up at or before t and not closed at or before t. Label: closes in (t, t + H]. Snapshots run
    from world start + warm-up while t + H <= world end, so every label is fully observed.
    """
    if horizon_days <= 0 or snapshot_every_days <= 0 or warmup_days < 0:
        raise DataError("horizon_days and snapshot_every_days must be > 0 and warmup_days >= 0")
    start, end = _as_utc(world_start).normalize(), _as_utc(world_end)
    horizon = pd.Timedelta(days=horizon_days)
    first = start + pd.Timedelta(days=warmup_days)
    snapshots = pd.date_range(first, end - horizon, freq=f"{snapshot_every_days}D")
    if len(snapshots) < 3:
        raise DataError(
            f"only {len(snapshots)} churn snapshot(s) fit between {first.date()} and {end.date()} minus a "
            f"{horizon_days}-day horizon; use a longer world, a shorter horizon or a smaller snapshot step"
        )
    signup = customers.groupby("customer_id")["signup_date"].min().map(_as_utc)
    closed = closures.groupby("customer_id")["closed_at"].min() if len(closures) else pd.Series(dtype="object")
    base = pd.DataFrame({"customer_id": signup.index.astype("int64"), "signup": signup.to_numpy()})
    closed_at = base["customer_id"].map(closed)
    base["closed_at"] = pd.to_datetime(closed_at, utc=True)
    parts = []
    for t in snapshots:
        alive = (base["signup"] <= t) & (base["closed_at"].isna() | (base["closed_at"] > t))
        rows = base.loc[alive, ["customer_id", "closed_at"]]
        label = (rows["closed_at"] > t) & (rows["closed_at"] <= t + horizon)
        parts.append(
            pd.DataFrame(
                {"customer_id": rows["customer_id"].to_numpy(), TIMESTAMP: t, LABEL: label.astype("int8").to_numpy()}
            )
        )
    entity = pd.concat(parts, ignore_index=True)
    entity[TIMESTAMP] = pd.to_datetime(entity[TIMESTAMP], utc=True)
    return entity


def build_churn_training_set(
    settings: Settings,
    horizon_days: int | None = None,
    snapshot_every_days: int = 7,
    warmup_days: int = 28,
    store: FeatureStore | None = None,
    name: str = "churn",
) -> TrainingSet:
    """Churn training set: snapshot entity rows + labels, features from Feast's `churn_v1` service."""
    from nextbest import features as nb_features

    horizon = horizon_days or settings.training.churn_horizon_days
    start, end = world_window(settings)
    customers = read_source(settings, "customers", ["customer_id", "signup_date"])
    closures = read_source(settings, "closures", ["customer_id", "closed_at"])
    entity = churn_entity_frame(customers, closures, start, end, horizon, snapshot_every_days, warmup_days)
    entity = without_erased(settings, entity)
    store = store or nb_features.get_store(settings)
    retrieval = settings.features.offline_retrieval
    frame = _retrieve(store, nb_features.CHURN_SERVICE, entity.drop(columns=[LABEL]), retrieval)
    frame = _in_key_order(_attach_label(entity, frame, ["customer_id", TIMESTAMP]), ["customer_id"])
    frame[LABEL_KNOWN] = frame[TIMESTAMP] + pd.Timedelta(days=horizon)  # the trainer's split keys on it
    declared = nb_features.service_features(nb_features.CHURN_SERVICE)
    features, dropped = _feature_columns(
        frame, exclude={"customer_id", TIMESTAMP, LABEL, LABEL_KNOWN}, declared=declared
    )
    lineage = _lineage(settings, nb_features.CHURN_SERVICE, frame, dropped)
    lineage.update(horizon_days=horizon, snapshot_every_days=snapshot_every_days, warmup_days=warmup_days)
    logger.info(
        "churn training set: %d rows, %d features, positive rate %.4f", len(frame), len(features), frame[LABEL].mean()
    )
    return TrainingSet(model=name, frame=frame, feature_names=features, lineage=lineage, kind=CLOSES_WITHIN)


def without_erased(settings: Settings, entity: pd.DataFrame) -> pd.DataFrame:
    """Entity rows without erased customers (the simulated bank's tombstones, `nextbest.erasure`): a rebuilt or
    re-simulated world never brings an erased customer back into a training set."""
    from nextbest.erasure import Tombstones

    erased = Tombstones.at(settings.home)
    return erased.drop(entity, "customer_id").reset_index(drop=True) if erased else entity


def _in_key_order(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows in (event time, key) order. Feast returns point-in-time joins in an order that changes from run to run;
    every consumer downstream is order-sensitive (XGBoost row subsampling, the evaluation's seeded sample of
    decision points), so without this the same world, seed and trials gave a different model and a different
    ladder on each run (measured: the held-out split's row order changed between two builds of the same repo)."""
    return frame.sort_values([TIMESTAMP, *keys], kind="stable", ignore_index=True)


def _attach_label(entity: pd.DataFrame, retrieved: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Re-attach labels by key: Feast may reorder rows and changes timestamp precision, so never rely on order."""
    if LABEL in retrieved.columns:
        return retrieved
    left = retrieved.copy()
    right = entity[[*keys, LABEL]].copy()
    for frame in (left, right):
        frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True).astype("datetime64[us, UTC]")
    merged = left.merge(right, on=keys, how="left", validate="one_to_one")
    if merged[LABEL].isna().any():
        raise DataError("Feast returned entity rows that do not match the requested ones")
    merged[LABEL] = merged[LABEL].astype("int8")
    return merged


def _lineage(settings: Settings, service: str, frame: pd.DataFrame, dropped: list[str]) -> dict[str, Any]:
    info = world_info(settings)
    return {
        "feature_service": service,
        "snapshot_start": str(frame[TIMESTAMP].min()),
        "snapshot_end": str(frame[TIMESTAMP].max()),
        "rows": len(frame),
        "positives": int(frame[LABEL].sum()),
        "customers": int(frame["customer_id"].nunique()),
        "world_seed": info.get("seed"),
        "world_generator": info.get("generator_version"),
        "world_scenario": info.get("scenario"),
        "sources_dir": str(settings.sources_dir),
        "not_model_inputs": dropped,
    }


# ---------------------------------------------------------------------------------------------------------------
# Next best action


def nba_entity_frame(contacts: pd.DataFrame) -> pd.DataFrame:
    """Entity rows for the NBA set: one per logged contact at its decision time, with request context and label.

    The request fields (channel, hour, location, request timestamp) are built by the feature repo's
    `request_frame`, the same mapping serving uses for a live request, so training and serving see one context.
    """
    from nextbest.features import request_frame

    if contacts.empty:
        raise DataError("contacts table is empty: the NBA model needs logged contacts with outcomes")
    missing = [c for c in ("contact_id", "customer_id", "ts", "action_id", "accepted") if c not in contacts.columns]
    if missing:
        raise DataError(f"contacts table lacks column(s) {', '.join(missing)} of the data contract")
    contacts = contacts.reset_index(drop=True)
    entity = request_frame(contacts, ts_column="ts")
    for col in NBA_META:
        if col in contacts.columns and col not in entity.columns:
            entity[col] = contacts[col].to_numpy()
    entity[LABEL] = contacts["accepted"].astype("int8").to_numpy()
    return entity.sort_values([TIMESTAMP, "contact_id"], ignore_index=True)


def nba_feature_rows(store: FeatureStore, entity: pd.DataFrame, method: RetrievalMethod = "asof") -> pd.DataFrame:
    """NBA rows for an entity frame of contacts (one per `contact_id`, with label): Feast point-in-time features of
    the `nba_v1` service at each contact's time, in contact order, plus the action's catalogue features. Shared by
    the logged contacts and the served decisions (`training.served`), so both get their features the same way."""
    from nextbest import features as nb_features
    from nextbest.catalogue import load_catalogue

    frame = _retrieve(store, nb_features.NBA_SERVICE, entity, method)
    if LABEL not in frame.columns:
        frame = _attach_label(entity, frame, ["contact_id"])
    frame = _in_key_order(frame, ["contact_id"])
    catalogue = load_catalogue()
    return nb_features.add_relevance_features(nb_features.add_action_features(frame, catalogue), catalogue)


def build_nba_training_set(
    settings: Settings, warmup_days: int = 14, store: FeatureStore | None = None, name: str = "nba"
) -> TrainingSet:
    """NBA training set: logged contacts + features from Feast's `nba_v1` service + catalogue action attributes.

    Contacts in the first `warmup_days` of the data are left out: their customers have no history yet, a state
    serving never sees, and the model would spend capacity on it.
    """
    from nextbest import features as nb_features

    start, _ = world_window(settings)
    contacts = read_source(settings, "contacts")
    contacts = contacts[pd.to_datetime(contacts["ts"], utc=True) >= start + pd.Timedelta(days=warmup_days)]
    contacts = without_erased(settings, contacts)
    request_fields = list(nb_features.REQUEST_FIELDS)
    entity = nba_entity_frame(contacts)
    frame = nba_feature_rows(store or nb_features.get_store(settings), entity, settings.features.offline_retrieval)
    # Raw request fields are inputs of the on-demand view, not features: the view's outputs (one-hots, recency,
    # decayed strength) are. A raw epoch `request_ts` as a feature would only teach the model the calendar.
    not_features = {"customer_id", TIMESTAMP, LABEL, *NBA_META, *request_fields}
    action_features = [*nb_features.ACTION_FEATURES, *nb_features.RELEVANCE_FEATURES]
    declared = [*nb_features.service_features(nb_features.NBA_SERVICE), *action_features]
    features, dropped = _feature_columns(frame, exclude=not_features, declared=declared)
    lineage = _lineage(settings, nb_features.NBA_SERVICE, frame, dropped)
    lineage.update(action_features=action_features, request_fields=request_fields, warmup_days=warmup_days)
    logger.info(
        "nba training set: %d rows, %d features, acceptance %.4f", len(frame), len(features), frame[LABEL].mean()
    )
    return TrainingSet(model=name, frame=frame, feature_names=features, lineage=lineage, kind=OFFER_ACCEPTED)


def build_training_set(settings: Settings, model: str, horizon_days: int | None = None) -> TrainingSet:
    """The training set of one of the simulated bank's models, by its label in the project file (default options;
    `horizon_days` overrides the churn horizon)."""
    spec = project_of(settings).model(model)
    if spec.label == CLOSES_WITHIN:
        return build_churn_training_set(settings, horizon_days=horizon_days, name=model)
    if spec.label == OFFER_ACCEPTED:
        return build_nba_training_set(settings, name=model)
    raise DataError(
        f"model {model!r}: the genome builds {CLOSES_WITHIN!r} and {OFFER_ACCEPTED!r} labels, not {spec.label!r}"
    )


def build_project_training_set(
    settings: Settings, project: Project, model: str, horizon_days: int | None = None
) -> TrainingSet:
    """The model's usual training set, built the way its project's kind builds it.

    genome: the simulated bank's builders (above: churn snapshots, logged NBA contacts; `horizon_days` overrides the
    churn horizon); tables: the onboarding training set of the model's feature service (`nextbest.onboarding.datasets`,
    labels from the bank's own tables).
    """
    spec = project.model(model)  # ConfigError naming the project's models
    if project.kind == "genome":
        return build_training_set(settings, model, horizon_days=horizon_days)
    from nextbest.onboarding.datasets import build_training_set as build_table_training_set

    assert project.tables is not None  # a tables project always has its mapping (Project validates it)
    return replace(build_table_training_set(project.tables, settings, model), kind=spec.label)
