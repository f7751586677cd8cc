"""The offer catalogue (actions, values, channels, eligibility, templates) loaded and validated from YAML.

The catalogue is data: `nextbest/data/catalogue.yaml` ships the default; `NEXTBEST_CATALOGUE` or an explicit
path points at a bank's own. The simulator, training (action attributes are model inputs) and the decision
policy all read the same object, so an action added here is scored, offered and simulated without code changes.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from nextbest.base import Frozen

DEFAULT_CATALOGUE = Path(__file__).parent / "data" / "catalogue.yaml"

PRODUCTS: tuple[str, ...] = (
    "current_account",
    "savings",
    "term_deposit",
    "credit_card",
    "travel_card",
    "personal_loan",
    "car_loan",
    "mortgage",
    "investments",
    "home_insurance",
    "travel_insurance",
    "bnpl",
    "business_account",
    "business_loan",
    "merchant_acquiring",
)
SEGMENTS: tuple[str, ...] = ("mass", "affluent", "small_business")
RISK_BANDS: tuple[str, ...] = ("low", "medium", "high")
ActionKind = Literal["sales", "retention", "service"]


class Eligibility(Frozen):
    min_age: int | None = None
    max_age: int | None = None
    segments: tuple[str, ...] | None = None
    requires: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    max_risk_band: Literal["low", "medium", "high"] | None = None

    @model_validator(mode="after")
    def _known_names(self) -> Eligibility:
        for p in (*self.requires, *self.excludes):
            if p not in PRODUCTS:
                raise ValueError(f"unknown product {p!r} in eligibility; known: {', '.join(PRODUCTS)}")
        for s in self.segments or ():
            if s not in SEGMENTS:
                raise ValueError(f"unknown segment {s!r}; known: {', '.join(SEGMENTS)}")
        return self


class Action(Frozen):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: ActionKind
    product: str | None
    value: float = Field(gt=0)
    credit: bool = False
    channels: tuple[str, ...]
    eligibility: Eligibility = Eligibility()
    templates: dict[str, str]

    @model_validator(mode="after")
    def _consistent(self) -> Action:
        if self.product is not None and self.product not in PRODUCTS:
            raise ValueError(f"action {self.id}: unknown product {self.product!r}")
        missing = [c for c in self.channels if c not in self.templates]
        if missing:
            raise ValueError(f"action {self.id}: no approved template for channel(s) {missing}")
        return self


class Catalogue(Frozen):
    schema_version: int = 1
    channels: tuple[str, ...]
    actions: tuple[Action, ...]

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        ids = [a.id for a in self.actions]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate action ids in catalogue")
        for a in self.actions:
            bad = [c for c in a.channels if c not in self.channels]
            if bad:
                raise ValueError(f"action {a.id}: channel(s) {bad} not in catalogue channels")
        return self

    @property
    def action_ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.actions)

    def action(self, action_id: str) -> Action:
        for a in self.actions:
            if a.id == action_id:
                return a
        raise KeyError(f"unknown action {action_id!r}")

    def index(self, action_id: str) -> int:
        return self.action_ids.index(action_id)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load and validate a catalogue (default: NEXTBEST_CATALOGUE or the shipped one)."""
    resolved = Path(path or os.environ.get("NEXTBEST_CATALOGUE") or DEFAULT_CATALOGUE)
    return _load(resolved.resolve())


@lru_cache(maxsize=8)
def _load(path: Path) -> Catalogue:
    if not path.is_file():
        raise FileNotFoundError(f"offer catalogue not found: {path}")
    with path.open() as f:
        raw = yaml.safe_load(f)
    return Catalogue.model_validate(raw)
