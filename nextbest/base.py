"""The one base class of every configuration model: frozen, unknown keys are errors (a typo names the key)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """A validated, immutable configuration object; `extra="forbid"` turns a misspelt YAML key into an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)
