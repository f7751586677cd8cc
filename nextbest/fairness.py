"""The fairness check on a decision set: adverse-impact ratios of credit offers and prices across groups.

For one decision set (a scorecard group of served traffic, a ladder stage, a twin policy, a model's holdout
selection) and each grouping -- age bands of the customer's age feature, always, and every protected attribute the
project declares (`fairness.protected` in the project file) -- two figures per group:

- **credit offer rate**: the share of the group's customers (units) that received at least one credit offer (a
  catalogue action with `credit: true`). Its adverse-impact ratio is the group's rate over the rate of the most
  favoured group (the highest rate among the groups with at least `min_group_size` units), with the Katz log
  interval of a ratio of two proportions: log(r) +- z sqrt(1/x1 - 1/n1 + 1/x0 - 1/n0) (Katz et al. 1978; a group
  with no offer at all gets ratio 0, its interval computed with 0.5 added to its count);
- **mean price** of the priced offers, per product: the group's mean price against the most favourable group's
  (the lowest mean for a credit product's APR, the highest for a deposit rate), expressed so that < 1 means the
  group is worse off (credit: reference mean / group mean; deposit: group mean / reference mean), with a delta-method
  interval on the log ratio: se^2 = s1^2 / (n1 m1^2) + s0^2 / (n0 m0^2).

A ratio is **flagged** when its point estimate is below the threshold (0.80, the four-fifths rule of the US Uniform
Guidelines on Employee Selection Procedures, 29 CFR 1607.4(D), the usual screen in fair-lending reviews too) and
both groups have at least `min_group_size` units (smaller groups are reported, marked too small, never flagged).
The point estimate is the test, not an interval bound: the rule is a screen stated on the observed ratio, and
testing the upper bound would let a small or noisy group pass by its width; the interval is reported beside it so
a reader sees when a flag may be noise.

`gate_refusals(candidate, current)` is what the gates use (the twin's what-if and the promotion gate): a candidate is
refused for every flagged ratio that is worse than the current policy's or champion's beyond noise (the current
ratio lies above the candidate's 95% interval; no current: every flagged ratio refuses; the promotion gate flags a
first version for review instead unless the project sets `refuse_first_version`). A current policy below the line
is itself flagged in its own report, and a candidate may not make it clearly worse.

Protected attributes never reach a model: the project contract refuses a model feature service that carries one
(`nextbest.project`), and the check reads each one from its own source keyed by the served entity
(`protected_values`). See docs/fairness.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from nextbest.base import Frozen
from nextbest.errors import ConfigError

if TYPE_CHECKING:
    from nextbest.catalogue import Catalogue
    from nextbest.project import Project

logger = logging.getLogger(__name__)

#: two-sided 95% normal quantile
Z95 = 1.959963984540054
AGE = "age_band"
OFFER_RATE = "credit_offer_rate"
PRICE = "mean_price"
UNKNOWN = "unknown"
#: products whose price is a rate the customer earns (higher is favourable); every other priced product's price is
#: what the customer pays (an APR: lower is favourable)
DEPOSIT_PRODUCTS: frozenset[str] = frozenset({"savings", "term_deposit"})
COLUMNS: tuple[str, ...] = (
    "attribute", "metric", "product", "group", "units", "events", "value", "sd", "reference", "reference_units",
    "reference_value", "ratio", "low", "high", "too_small", "flagged",
)  # fmt: skip


class ProtectedSource(Frozen):
    """Where a protected attribute is read, keyed by the served entity: a table of the project's mapping (file or
    derived) or a CSV / parquet file (path relative to the project file)."""

    table: str | None = None
    file: Path | None = None
    key: str = Field(description="The column holding the served entity's key.")
    column: str = Field(description="The column holding the attribute's value.")

    @model_validator(mode="after")
    def _one_source(self) -> ProtectedSource:
        if (self.table is None) == (self.file is None):
            raise ValueError("fairness.protected source: give exactly one of `table` or `file`")
        return self


class ProtectedAttribute(Frozen):
    """A protected attribute the check groups by: its source, how its values are named, and the feature names that
    carry it (none of them may be a model input)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    source: ProtectedSource
    #: value -> group label (e.g. {0: male, 1: female}); values not listed keep their own text
    labels: dict[str, str] = Field(default_factory=dict)
    #: feature names that encode the attribute (besides its name): refused in every model's feature service
    features: tuple[str, ...] = ()

    @field_validator("labels", mode="before")
    @classmethod
    def _text_keys(cls, value: object) -> object:
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else value


class FairnessSpec(Frozen):
    """A project's fairness check (`fairness:` in the project file; every key optional)."""

    threshold: float = Field(0.8, gt=0.0, le=1.0, description="Adverse-impact ratio below which a group is flagged.")
    #: lower edges of the age bands (years): [18, 25, 35, 50, 65] -> 18-24, 25-34, 35-49, 50-64, 65+
    age_bands: tuple[int, ...] = (18, 25, 35, 50, 65)
    #: the feature holding the customer's age (default: the policy's `profile.age`)
    age_feature: str | None = None
    min_group_size: int = Field(30, ge=1, description="Groups with fewer units are reported, never flagged.")
    #: the promotion gate's selection: a model 'offers' to the top share of its holdout rows by score
    selection_share: float = Field(0.2, gt=0.0, le=1.0)
    #: the promotion gate: a first version (no champion) with a flagged ratio is refused (default: flagged only)
    refuse_first_version: bool = False
    protected: tuple[ProtectedAttribute, ...] = ()

    @field_validator("age_bands")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) < 2 or any(b <= a for a, b in zip(value, value[1:], strict=False)) or value[0] < 0:
            raise ValueError(f"fairness.age_bands: at least two increasing, non-negative edges (got {list(value)})")
        return value

    @model_validator(mode="after")
    def _unique(self) -> FairnessSpec:
        names = [p.name for p in self.protected]
        if len(set(names)) != len(names) or AGE in names:
            raise ValueError(f"fairness.protected: names must be unique and not {AGE!r} (got {names})")
        return self

    def protected_features(self) -> dict[str, str]:
        """feature name -> the protected attribute it carries (its own name and its declared features)."""
        return {f: p.name for p in self.protected for f in (p.name, *p.features)}


# -------------------------------------------------------------------- groups


def age_band_labels(edges: Sequence[int]) -> list[str]:
    """'18-24', '25-34', ..., '65+' for edges [18, 25, ..., 65]."""
    labels = [f"{a}-{b - 1}" for a, b in zip(edges, edges[1:], strict=False)]
    return [*labels, f"{edges[-1]}+"]


def age_bands(ages: Iterable[Any], edges: Sequence[int]) -> pd.Series:
    """Each age's band label; below the first edge '<18', missing 'unknown'."""
    values = pd.to_numeric(pd.Series(list(ages), dtype="object"), errors="coerce").astype("float64")
    labels = age_band_labels(edges)
    pos = np.searchsorted(np.asarray(edges, dtype=float), values.to_numpy(), side="right") - 1
    out = np.where(pos < 0, f"<{edges[0]}", np.array(labels, dtype=object)[np.clip(pos, 0, len(labels) - 1)])
    return pd.Series(np.where(values.isna(), UNKNOWN, out), index=values.index, dtype="object")


def protected_values(spec: FairnessSpec, project: Project | None = None, base: Path | None = None) -> pd.DataFrame:
    """Every declared protected attribute by the served entity's key (text), one column per attribute, values as
    their group labels. Read from each attribute's own source; ConfigError naming the attribute and column when the
    source lacks it."""
    frames = []
    for attr in spec.protected:
        frame = _read_source(attr, project, base)
        missing = [c for c in (attr.source.key, attr.source.column) if c not in frame.columns]
        if missing:
            raise ConfigError(
                f"fairness.protected {attr.name!r}: source has no column(s) {missing}; its columns: "
                f"{sorted(frame.columns)}"
            )
        keys = frame[attr.source.key].astype(str)
        values = frame[attr.source.column].map(lambda v: UNKNOWN if pd.isna(v) else _text(v))
        values = values.map(lambda v, labels=attr.labels: labels.get(v, v))
        frames.append(pd.Series(values.to_numpy(), index=keys.to_numpy(), name=attr.name).groupby(level=0).last())
    if not frames:
        return pd.DataFrame(index=pd.Index([], dtype="object", name="customer_id"))
    return pd.concat(frames, axis=1).rename_axis("customer_id")


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_source(attr: ProtectedAttribute, project: Project | None, base: Path | None) -> pd.DataFrame:
    src = attr.source
    if src.file is not None:
        path = src.file if src.file.is_absolute() else (base or Path.cwd()) / src.file
        if not path.is_file():
            raise ConfigError(f"fairness.protected {attr.name!r}: source file {path} not found")
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if project is None or project.tables is None:
        raise ConfigError(f"fairness.protected {attr.name!r}: a `table` source needs a project with tables")
    from nextbest.onboarding.tables import connect, ident

    con = connect(project.tables)
    try:
        cols = ", ".join(ident(c) for c in dict.fromkeys((src.key, src.column)))
        present = {r[0] for r in con.execute(f"DESCRIBE {ident(str(src.table))}").fetchall()}
        missing = [c for c in (src.key, src.column) if c not in present]
        if missing:
            raise ConfigError(
                f"fairness.protected {attr.name!r}: table {src.table!r} has no column(s) {missing}; "
                f"its columns: {sorted(present)}"
            )
        return con.execute(f"SELECT {cols} FROM {ident(str(src.table))}").df()
    finally:
        con.close()


# -------------------------------------------------------------------- ratios


def katz_interval(x1: float, n1: float, x0: float, n0: float, z: float = Z95) -> tuple[float, float, float]:
    """(ratio, low, high) of the proportions x1/n1 over x0/n0 with the Katz log interval; a zero count in the
    numerator gives ratio 0 and an interval with 0.5 added to it (and to its total)."""
    if n1 <= 0 or n0 <= 0 or x0 <= 0:
        return math.nan, math.nan, math.nan
    ratio = (x1 / n1) / (x0 / n0)
    if x1 <= 0:
        x1, n1 = 0.5, n1 + 0.5
    se = math.sqrt(max(1.0 / x1 - 1.0 / n1 + 1.0 / x0 - 1.0 / n0, 0.0))
    centre = math.log((x1 / n1) / (x0 / n0))
    return ratio, math.exp(centre - z * se), math.exp(centre + z * se)


def mean_ratio_interval(
    m1: float, s1: float, n1: int, m0: float, s0: float, n0: int, lower_is_better: bool, z: float = Z95
) -> tuple[float, float, float]:
    """(ratio, low, high) of two mean prices, oriented so < 1 means group 1 is worse off (module docstring)."""
    if n1 < 1 or n0 < 1 or not (m1 > 0 and m0 > 0):
        return math.nan, math.nan, math.nan
    ratio = m0 / m1 if lower_is_better else m1 / m0
    var = 0.0
    for m, s, n in ((m1, s1, n1), (m0, s0, n0)):
        var += ((s if np.isfinite(s) else 0.0) ** 2) / (n * m * m) if n > 1 else math.inf
    if not math.isfinite(var):
        return ratio, math.nan, math.nan
    se = math.sqrt(var)
    return ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se)


def _row(**values: Any) -> dict[str, Any]:
    return {c: values.get(c) for c in COLUMNS}


def offer_rate_rows(groups: pd.Series, offered: pd.Series, attribute: str, spec: FairnessSpec) -> list[dict[str, Any]]:
    """One row per group: units, units offered credit, the rate and its ratio to the most favoured group's."""
    known = groups.ne(UNKNOWN)
    per = pd.DataFrame({"g": groups[known], "o": offered[known].astype(bool)}).groupby("g")["o"].agg(["size", "sum"])
    if per.empty:
        return []
    per["rate"] = per["sum"] / per["size"]
    big = per.loc[per["size"] >= spec.min_group_size]
    ref = big["rate"].idxmax() if len(big) and big["rate"].max() > 0 else None
    rows = []
    for g, r in per.iterrows():
        n, x = int(r["size"]), int(r["sum"])
        if ref is None:
            ratio = low = high = math.nan
            n0, rate0 = None, None
        else:
            n0, x0 = int(per.loc[ref, "size"]), int(per.loc[ref, "sum"])
            rate0 = x0 / n0
            ratio, low, high = (1.0, math.nan, math.nan) if g == ref else katz_interval(x, n, x0, n0)
        small = n < spec.min_group_size
        flagged = bool(ref is not None and not small and np.isfinite(ratio) and ratio < spec.threshold)
        rows.append(
            _row(attribute=attribute, metric=OFFER_RATE, group=str(g), units=n, events=x, value=r["rate"],
                 reference=ref, reference_units=n0, reference_value=rate0, ratio=ratio, low=low, high=high,
                 too_small=small, flagged=flagged)
        )  # fmt: skip
    return rows


def price_rows(groups: pd.Series, prices: pd.DataFrame, attribute: str, spec: FairnessSpec) -> list[dict[str, Any]]:
    """Per priced product and group: offers, mean price (sd) and its ratio to the most favourable group's.

    `prices`: one row per priced offer with `unit` (the key of `groups`), `product` and `price`."""
    if prices.empty:
        return []
    frame = prices.assign(g=prices["unit"].map(groups).fillna(UNKNOWN))
    frame = frame.loc[frame["g"].ne(UNKNOWN) & frame["price"].notna()]
    rows: list[dict[str, Any]] = []
    for product, part in frame.groupby("product", sort=True):
        lower = str(product) not in DEPOSIT_PRODUCTS
        per = part.groupby("g")["price"].agg(["size", "mean", "std"])
        big = per.loc[per["size"] >= spec.min_group_size]
        ref = (big["mean"].idxmin() if lower else big["mean"].idxmax()) if len(big) else None
        for g, r in per.iterrows():
            n = int(r["size"])
            small = n < spec.min_group_size
            if ref is None:
                ratio = low = high = math.nan
                n0, m0 = None, None
            else:
                b = per.loc[ref]
                n0, m0 = int(b["size"]), float(b["mean"])
                args = (float(r["mean"]), float(r["std"]), n, m0, float(b["std"]), n0, lower)
                ratio, low, high = (1.0, math.nan, math.nan) if g == ref else mean_ratio_interval(*args)
            flagged = bool(ref is not None and not small and np.isfinite(ratio) and ratio < spec.threshold)
            rows.append(
                _row(attribute=attribute, metric=PRICE, product=str(product), group=str(g), units=n, events=n,
                     value=float(r["mean"]), sd=float(r["std"]), reference=ref, reference_units=n0,
                     reference_value=m0, ratio=ratio, low=low, high=high, too_small=small, flagged=flagged)
            )  # fmt: skip
    return rows


# -------------------------------------------------------------------- the report


@dataclass
class FairnessReport:
    """The fairness check of one decision set: one row per (attribute, metric, product, group)."""

    rows: pd.DataFrame
    threshold: float
    units: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> pd.DataFrame:
        return self.rows.loc[self.rows["flagged"].astype(bool)] if len(self.rows) else self.rows

    @property
    def passed(self) -> bool:
        return self.flagged.empty

    @property
    def min_ratio(self) -> float:
        """The lowest ratio of a group large enough to be judged (NaN when none)."""
        if self.rows.empty:
            return math.nan
        judged = self.rows.loc[~self.rows["too_small"].astype(bool), "ratio"].astype(float)
        return float(judged.min()) if judged.notna().any() else math.nan

    def ratio(self, attribute: str, group: str, metric: str = OFFER_RATE, product: str | None = None) -> float:
        """One group's ratio (NaN when not in the report)."""
        r = self.rows
        if r.empty:
            return math.nan
        hit = r[(r["attribute"] == attribute) & (r["group"] == group) & (r["metric"] == metric)]
        if product is not None:
            hit = hit[hit["product"] == product]
        return float(hit["ratio"].iloc[0]) if len(hit) else math.nan

    def reasons(self) -> list[str]:
        """One line per flagged ratio."""
        return [describe(row, self.threshold) for row in self.flagged.to_dict("records")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "units": self.units,
            "passed": self.passed,
            "min_ratio": plain(self.min_ratio),
            "flagged": self.reasons(),
            "notes": self.notes,
            "rows": [{k: plain(v) for k, v in row.items()} for row in self.rows.to_dict("records")],
        }


def plain(value: Any) -> Any:
    """A JSON-ready scalar: numpy scalars as Python ones, NaN and infinities as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def describe(row: Mapping[str, Any], threshold: float) -> str:
    """'credit offer rate of age_band 65+: ratio 0.41 [0.35, 0.48] to 35-49 (n 812 vs 2,301), below 0.80'."""
    what = "credit offer rate" if row["metric"] == OFFER_RATE else f"mean {row['product']} price"
    low, high = row.get("low"), row.get("high")
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None and np.isfinite(low) and np.isfinite(high) else ""
    n0 = row.get("reference_units")
    return (
        f"{what} of {row['attribute']} {row['group']}: ratio {row['ratio']:.2f}{interval} to {row['reference']} "
        f"(n {int(row['units']):,} vs {int(n0 or 0):,}), below {threshold:.2f}"
    )


def fairness_report(
    groups: pd.DataFrame,
    offered: pd.Series,
    spec: FairnessSpec,
    prices: pd.DataFrame | None = None,
) -> FairnessReport:
    """The check of one decision set. `groups`: one row per unit (index: the unit key), one column per grouping
    (`age_band`, each protected attribute); `offered`: per unit, whether it received a credit offer; `prices`: the
    priced offers (`unit`, `product`, `price`), optional."""
    offered = offered.reindex(groups.index).astype("boolean").fillna(False).astype(bool)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for attribute in groups.columns:
        column = groups[attribute].fillna(UNKNOWN).astype(str)
        unknown = int(column.eq(UNKNOWN).sum())
        if unknown:
            notes.append(f"{attribute}: {unknown:,} of {len(column):,} units have no value (left out)")
        rows += offer_rate_rows(column, offered, str(attribute), spec)
        if prices is not None and len(prices):
            rows += price_rows(column, prices, str(attribute), spec)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if not offered.any():
        notes.append("no credit offer in the decision set: no offer-rate ratio")
    return FairnessReport(frame, spec.threshold, units=len(groups), notes=notes)


def gate_refusals(candidate: FairnessReport, current: FairnessReport | None = None) -> list[str]:
    """Why a gate refuses the candidate: each flagged ratio (point estimate below the threshold) that is worse than
    the current policy's (or champion's) for the same group beyond noise -- the current ratio lies above the
    candidate's 95% interval; with no current, every flagged ratio. Empty: the candidate passes the fairness gate."""
    out = []
    for row in candidate.flagged.to_dict("records"):
        before = math.nan
        if current is not None:
            before = current.ratio(row["attribute"], row["group"], row["metric"], row["product"])
        high = row["high"] if row["high"] is not None and np.isfinite(row["high"]) else row["ratio"]
        if not np.isfinite(before) or (row["ratio"] < before and high < before):
            was = f" (current {before:.2f})" if np.isfinite(before) else ""
            out.append(f"adverse impact: {describe(row, candidate.threshold)}{was}")
    return out


# -------------------------------------------------------------------- decision sets


def credit_actions(catalogue: Catalogue) -> frozenset[str]:
    """The catalogue's credit offers (`credit: true`)."""
    return frozenset(a.id for a in catalogue.actions if a.credit)


def action_products(catalogue: Catalogue) -> dict[str, str]:
    """action id -> its product (the priced products' names)."""
    return {a.id: a.product for a in catalogue.actions if a.product}


def group_frame(
    units: pd.Index, ages: pd.Series | None, spec: FairnessSpec, protected: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The groupings of `units`: `age_band` from `ages` (indexed by unit) and the protected attributes' columns
    (`protected`, indexed by unit)."""
    frame = pd.DataFrame(index=units)
    age = ages.reindex(units) if ages is not None else pd.Series(np.nan, index=units)
    frame[AGE] = age_bands(age.to_numpy(), spec.age_bands).to_numpy()
    if protected is not None:
        for name in protected.columns:
            frame[name] = protected[name].reindex(units).fillna(UNKNOWN).to_numpy()
    return frame


def decision_set_report(
    decisions: pd.DataFrame,
    offers: pd.DataFrame,
    catalogue: Catalogue,
    spec: FairnessSpec,
    protected: pd.DataFrame | None = None,
) -> FairnessReport:
    """The check of a set of decisions, one unit per customer. `decisions`: `customer_id` (text) and `age` (the
    customer's age at the decision; the latest counts); `offers`: the delivered or recommended actions
    (`customer_id`, `action_id`, and `price` when priced); `protected`: attribute values by customer (text key)."""
    units = pd.Index(decisions["customer_id"].astype(str).unique(), name="customer_id")
    ages = decisions.assign(customer_id=decisions["customer_id"].astype(str)).groupby("customer_id")["age"].last()
    groups = group_frame(units, ages, spec, protected)
    credit = credit_actions(catalogue)
    ids = offers["customer_id"].astype(str) if len(offers) else pd.Series(dtype="object")
    offered = pd.Series(True, index=pd.Index(ids[offers["action_id"].isin(credit)].unique()) if len(offers) else [])
    prices = None
    if len(offers) and "price" in offers and offers["price"].notna().any():
        priced = offers.loc[offers["price"].notna()]
        prices = pd.DataFrame(
            {
                "unit": priced["customer_id"].astype(str).to_numpy(),
                "product": priced["action_id"].map(action_products(catalogue)).fillna(priced["action_id"]).to_numpy(),
                "price": pd.to_numeric(priced["price"], errors="coerce").to_numpy(),
            }
        )
    return fairness_report(groups, offered, spec, prices)


def age_feature(project: Project) -> str | None:
    """The feature holding the customer's age: `fairness.age_feature`, else the policy's `profile.age`."""
    if project.fairness.age_feature:
        return project.fairness.age_feature
    return project.policy.profile.age if project.policy is not None else None


def refusal_summary(reasons: Sequence[str], limit: int = 3) -> str:
    """The first reasons in one line (and how many more)."""
    shown = "; ".join(reasons[:limit])
    return shown + (f"; and {len(reasons) - limit} more" if len(reasons) > limit else "")


# -------------------------------------------------------------------- a model's selection (the promotion gate)


@dataclass
class SelectionCheck:
    """The promotion gate's fairness check of a model on its holdout: a model 'offers' credit to the top
    `spec.selection_share` of the credit rows by its score (rows: a customer at a snapshot, or an offer for a model
    that scores actions), and the offer rate of that selection is compared across `groups` (one row per holdout
    row: age band and protected attributes)."""

    spec: FairnessSpec
    groups: pd.DataFrame
    credit: np.ndarray  # per holdout row: is it a credit offer the model's score decides

    def report(self, scores: np.ndarray) -> FairnessReport:
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) != len(self.groups):
            raise ValueError(f"fairness: {len(scores)} scores for {len(self.groups)} holdout rows")
        rows = np.flatnonzero(self.credit)
        index = pd.RangeIndex(len(rows))
        if not len(rows):
            return FairnessReport(pd.DataFrame(columns=list(COLUMNS)), self.spec.threshold, notes=["no credit rows"])
        share = self.spec.selection_share
        order = np.argsort(-scores[rows], kind="stable")
        chosen = np.zeros(len(rows), dtype=bool)
        chosen[order[: max(1, round(share * len(rows)))]] = True
        groups = self.groups.iloc[rows].set_axis(index)
        report = fairness_report(groups, pd.Series(chosen, index=index), self.spec)
        report.notes.append(f"selection: the top {share:.0%} of {len(rows):,} credit rows by score")
        return report


def selection_check(
    holdout: pd.DataFrame,
    spec: FairnessSpec,
    credit: np.ndarray,
    age_column: str | None,
    key_column: str | None = None,
    protected: pd.DataFrame | None = None,
) -> SelectionCheck:
    """The check of a holdout: age bands from `age_column`, protected attributes by `key_column` (text keys)."""
    index = pd.RangeIndex(len(holdout))
    ages = holdout[age_column].set_axis(index) if age_column and age_column in holdout else None
    keyed = None
    if protected is not None and key_column and key_column in holdout:
        keys = holdout[key_column].astype(str).to_numpy()
        keyed = protected.reindex(keys).set_axis(index)
    return SelectionCheck(spec, group_frame(index, ages, spec, keyed), np.asarray(credit, dtype=bool))


def project_selection_check(project: Project, model: str, holdout: pd.DataFrame) -> SelectionCheck | None:
    """The promotion gate's check of one of the project's models, or None when the model decides no credit offer
    (it scores no credit action of the catalogue: a churn or default-risk model)."""
    if not project.serves or model not in project.model_names:
        return None
    catalogue = project.decisions()[1]
    scored = {a for a, m in project.action_models.items() if m == model}
    credit_ids = credit_actions(catalogue) & scored
    if not credit_ids:
        return None
    if "action_id" in holdout:
        credit = holdout["action_id"].isin(credit_ids).to_numpy()
    else:  # an entity model: its probability decides every credit action it scores
        credit = np.ones(len(holdout), dtype=bool)
    spec = project.fairness
    protected = protected_values(spec, project, project.source.parent if project.source else None)
    key = project.entities[project.model(model).entity].key
    return selection_check(holdout, spec, credit, age_feature(project), key, protected if spec.protected else None)
