"""Experiment assignment: the universal holdout, per-campaign control groups and live traffic splits.

Every assignment is a pure function of the project, a salt and the customer's key: a keyed BLAKE2b hash of the key's
text (an int key as its digits, as the decision log stores it) mapped to a number `u` in [0, 1). Nothing is stored,
so every worker, replica and batch job assigns a customer the same way, forever, as long as the configuration stays.

- Universal holdout: `u(project, "holdout") < share`. Its customers get no marketing from any path (real-time,
  campaigns); they are the control that uplift is measured against. Raising the share keeps everyone who was in.
- Campaign control: `u(project, "campaign:" + id) < share`, a fresh draw per campaign (salted by its id).
- Traffic split: the arms in declared order cover [0, 1) by their shares; `u(project, "split:" + name)` picks one.

Different salts give independent draws: a customer's holdout membership says nothing about their arm or their
campaign control. Every function takes one key (returning a scalar) or an array of keys (returning an array), with
the same result per key. The configuration lives in the project file under `serving.assignment` (`AssignmentConfig`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from nextbest.base import Frozen
from nextbest.errors import ConfigError

Key = int | str
Keys = Sequence[Key] | np.ndarray | pd.Series
_NAME = r"^[a-z][a-z0-9_]*$"
_SCALE = 2.0**-53
#: the names an assignment is logged under with a decision (the decision log's columns, once it has them)
LOG_FIELDS: tuple[str, ...] = ("holdout", "arm", "split", "campaign_id", "campaign_control")


class HoldoutSpec(Frozen):
    """The universal holdout: a share of customers that gets no marketing, to measure uplift against."""

    share: float = Field(0.0, ge=0.0, lt=1.0)
    # Changing the salt draws a new holdout: do it only to start a new measurement period.
    salt: str = ""


class ArmSpec(Frozen):
    """One arm of a traffic split: its share and what it serves (a policy file, model versions or aliases)."""

    name: str = Field(pattern=_NAME)
    share: float = Field(gt=0.0, le=1.0)
    policy: str | None = Field(None, description="A policy file for this arm (default: the project's policy).")
    models: dict[str, str] = Field(
        default_factory=dict, description="model name -> registry alias or version (default: champion)."
    )


class SplitSpec(Frozen):
    """A live traffic split between arms (e.g. champion 90 / challenger 10); the shares sum to 1."""

    name: str = Field(pattern=_NAME)
    arms: tuple[ArmSpec, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _shares(self) -> SplitSpec:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"split {self.name!r}: an arm name is used twice ({names})")
        total = sum(a.share for a in self.arms)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"split {self.name!r}: arm shares sum to {total:g}, not 1")
        return self

    @property
    def bounds(self) -> np.ndarray:
        """The upper end of each arm's interval of [0, 1)."""
        edges = np.cumsum([a.share for a in self.arms])
        edges[-1] = 1.0
        return edges


class AssignmentConfig(Frozen):
    """A project's experiment assignment (`serving.assignment` in the project file)."""

    holdout: HoldoutSpec = HoldoutSpec()
    splits: tuple[SplitSpec, ...] = ()
    # The control share of a campaign that names none.
    campaign_control_share: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _unique(self) -> AssignmentConfig:
        names = [s.name for s in self.splits]
        if len(set(names)) != len(names):
            raise ValueError(f"a split name is used twice ({names})")
        return self

    def split(self, name: str) -> SplitSpec:
        for s in self.splits:
            if s.name == name:
                return s
        raise ConfigError(f"unknown split {name!r}; splits: {', '.join(s.name for s in self.splits) or 'none'}")


# -------------------------------------------------------------------- the hash


def _key_text(key: Any) -> str:
    if isinstance(key, bool | np.bool_):
        raise TypeError(f"a customer key is an int or a string, not {key!r}")
    if isinstance(key, int | np.integer):
        return str(int(key))
    if isinstance(key, float | np.floating) and float(key).is_integer():
        return str(int(key))  # an int key read back through a float column
    if isinstance(key, str):
        return key
    raise TypeError(f"a customer key is an int or a string, not {type(key).__name__} {key!r}")


@functools.lru_cache(maxsize=256)
def _hasher(salt: str) -> Any:
    """The keyed BLAKE2b of a salt, built once per salt (a decision asks for its holdout draw): callers `copy()` it,
    never update it."""
    key = hashlib.blake2b(salt.encode(), digest_size=32).digest()
    return hashlib.blake2b(key=key, digest_size=8)


def _u(base: Any, key: Any) -> float:
    h = base.copy()
    h.update(_key_text(key).encode())
    return (int.from_bytes(h.digest(), "big") >> 11) * _SCALE


def _is_many(keys: object) -> bool:
    return isinstance(keys, np.ndarray | pd.Series | pd.Index | list | tuple)


@overload
def unit(salt: str, keys: Key) -> float: ...
@overload
def unit(salt: str, keys: Keys) -> np.ndarray: ...
def unit(salt: str, keys: Key | Keys) -> float | np.ndarray:
    """The uniform draw in [0, 1) of each key under `salt` (one key: a float; many: a float64 array)."""
    base = _hasher(salt)
    if not _is_many(keys):
        return _u(base, keys)
    values = keys.tolist() if isinstance(keys, np.ndarray | pd.Series | pd.Index) else keys
    return np.fromiter((_u(base, k) for k in values), dtype="float64", count=len(values))


def _below(salt: str, keys: Key | Keys, share: float) -> bool | np.ndarray:
    u = unit(salt, keys)
    return bool(u < share) if isinstance(u, float) else u < share


# -------------------------------------------------------------------- assignments


@dataclass(frozen=True, slots=True)
class Assignment:
    """One customer's assignment: holdout, and the arm of each split (what a decision logs)."""

    holdout: bool
    arms: dict[str, str] = field(default_factory=dict)

    def log_fields(self, split: str | None = None) -> dict[str, Any]:
        """The fields a decision logs (`LOG_FIELDS`): the holdout flag and the arm of `split` (default: the first)."""
        name = split if split is not None else next(iter(self.arms), None)
        return {"holdout": self.holdout, "split": name, "arm": self.arms.get(name) if name else None}


class Assigner:
    """A project's assignments: `Assigner(project.name, config)` (config: the project's `serving.assignment`)."""

    def __init__(self, project: str, config: AssignmentConfig | None = None) -> None:
        self.project = project
        self.config = config or AssignmentConfig()

    def _salt(self, what: str) -> str:
        return f"nextbest/{self.project}/{what}"

    @property
    def holdout_salt(self) -> str:
        return self._salt(f"holdout/{self.config.holdout.salt}")

    @overload
    def in_holdout(self, keys: Key) -> bool: ...
    @overload
    def in_holdout(self, keys: Keys) -> np.ndarray: ...
    def in_holdout(self, keys: Key | Keys) -> bool | np.ndarray:
        """Whether each key is in the universal holdout (no marketing, ever)."""
        share = self.config.holdout.share
        if share <= 0:
            return np.zeros(len(keys), bool) if _is_many(keys) else False  # type: ignore[arg-type]
        return _below(self.holdout_salt, keys, share)

    @overload
    def in_control(self, campaign_id: str, keys: Key, share: float | None = None) -> bool: ...
    @overload
    def in_control(self, campaign_id: str, keys: Keys, share: float | None = None) -> np.ndarray: ...
    def in_control(self, campaign_id: str, keys: Key | Keys, share: float | None = None) -> bool | np.ndarray:
        """Whether each key is in the campaign's control group (`share` default: `campaign_control_share`)."""
        share = self.config.campaign_control_share if share is None else share
        if not 0.0 <= share < 1.0:
            raise ConfigError(f"campaign {campaign_id!r}: control share {share} is not in [0, 1)")
        if share <= 0:
            return np.zeros(len(keys), bool) if _is_many(keys) else False  # type: ignore[arg-type]
        return _below(self._salt(f"campaign/{campaign_id}"), keys, share)

    @overload
    def arm(self, split: str, keys: Key) -> str: ...
    @overload
    def arm(self, split: str, keys: Keys) -> np.ndarray: ...
    def arm(self, split: str, keys: Key | Keys) -> str | np.ndarray:
        """The arm of `split` each key is served by (an array of arm names for many keys)."""
        spec = self.config.split(split)
        u = unit(self._salt(f"split/{spec.name}"), keys)
        names = np.array([a.name for a in spec.arms], dtype=object)
        index = np.searchsorted(spec.bounds, u, side="right")
        return str(names[int(index)]) if isinstance(u, float) else names[index]

    def assign(self, key: Key) -> Assignment:
        """The holdout flag and every split's arm of one customer."""
        return Assignment(self.in_holdout(key), {s.name: self.arm(s.name, key) for s in self.config.splits})

    def assign_frame(self, keys: Keys) -> pd.DataFrame:
        """`assign` for many keys: columns `customer_id`, `holdout`, then one `arm_<split>` per split."""
        out = pd.DataFrame({"customer_id": list(keys) if not isinstance(keys, pd.Series) else keys.to_numpy()})
        out["holdout"] = self.in_holdout(keys)
        for s in self.config.splits:
            out[f"arm_{s.name}"] = self.arm(s.name, keys)
        return out
