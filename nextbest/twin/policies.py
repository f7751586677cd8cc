"""The policies a twin runs: the evaluation ladder's stages, the oracle, the serving policy and a candidate.

Each `TwinPolicy` is a decision policy file (`nextbest.policy.PolicyConfig`) and the scorers of its model slots
(`nextbest.twin.scorers`); every one of them decides through the same engine (`nextbest.twin.engine`):

| name | label | the action model's slot | the churn model's slot |
| --- | --- | --- | --- |
| `1` | one offer for all | the logged acceptance rate of each action (the same for everyone) | the logged churn rate |
| `2` | segment rules | the logged rate per action within segment x age band | the logged churn rate |
| `3` | batch model, no real-time context | an NBA model trained without the moment's features | the churn champion |
| `5` | full model + policy (the serving policy) | the NBA champion (or `serving_versions`) | the churn champion |
| `5list` | `5` at list price (`pricing.personalise: false`) | as `5` | as `5` |
| `oracle` | true propensities | the simulator's true P(accept) | the true P(close) |
| `candidate` | a candidate policy file and/or model versions | as `5`, or the versions given | as `5` |

Stages 1 and 2 learn from the home world's logged contacts, stage 3 is trained on its NBA training set
(`training.evaluate.train_stage3_model`, the ladder's own recipe), `5` and `candidate` load registered versions.
Every policy but the candidate uses the project's policy file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from nextbest.errors import ConfigError, NotReadyError
from nextbest.twin.scorers import ConstantScorer, RateScorer, TruthScorer

if TYPE_CHECKING:
    from nextbest.policy import PolicyConfig
    from nextbest.project import Project
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

LABELS: dict[str, str] = {
    "1": "1 one offer for all",
    "2": "2 segment rules",
    "3": "3 batch model, no real-time context",
    "5": "5 full model + policy",
    "5list": "5 full model + policy, list price",
    "oracle": "oracle (true propensities)",
    "candidate": "candidate",
}
LADDER: tuple[str, ...] = ("1", "2", "3", "5", "5list", "oracle")
#: the list-price arm: the serving policy with `pricing.personalise: false` (docs/pricing.md)
LIST_ARM = "5list"
ALIASES: dict[str, str] = {
    "serving": "5",
    "current": "5",
    "stage1": "1",
    "stage2": "2",
    "stage3": "3",
    "stage5": "5",
    "list": "5list",
}


@dataclass(frozen=True)
class TwinPolicy:
    """One policy of a twin run: its name, label, policy file and the scorer of each model slot."""

    name: str
    label: str
    policy: PolicyConfig
    models: Mapping[str, Any]
    source: str = ""


def policy_names(names: Sequence[str], candidate: bool) -> list[str]:
    """The canonical names to run, in ladder order (`serving` is stage 5; a candidate is compared with it)."""
    out = []
    for raw in names:
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if name not in LABELS:
            raise ConfigError(f"unknown twin policy {raw!r}; known: {', '.join([*LABELS, *ALIASES])}")
        out.append(name)
    if candidate and "candidate" not in out:
        out.append("candidate")
    if "candidate" in out and "5" not in out:
        out.insert(0, "5")
    order = [*LADDER, "candidate"]
    return sorted(dict.fromkeys(out), key=order.index)


def _slots(project: Project) -> tuple[str, str | None]:
    """(the action model's name, the churn model's name or None)."""
    action = project.action_model
    if action is None:
        raise ConfigError(f"project {project.name!r} has no action model: the twin scores actions with one")
    return action, project.decisions()[2].churn_model


def logged_contacts(settings: Settings) -> pd.DataFrame:
    """The home world's logged contacts as the rules learn from them: action_id, accepted, segment, age_band."""
    from training.datasets import read_source
    from training.ladder import age_band

    contacts = read_source(settings, "contacts", columns=["customer_id", "ts", "action_id", "accepted"])
    people = read_source(settings, "customers", columns=["customer_id", "segment", "birth_year"])
    people = people.drop_duplicates("customer_id", keep="last").set_index("customer_id")  # both never change
    ts = pd.to_datetime(contacts["ts"], utc=True)
    age = ts.dt.year.to_numpy() - contacts["customer_id"].map(people["birth_year"]).to_numpy()
    return pd.DataFrame(
        {
            "action_id": contacts["action_id"].to_numpy(),
            "accepted": contacts["accepted"].astype(bool).to_numpy(),
            "segment": contacts["customer_id"].map(people["segment"]).astype(str).to_numpy(),
            "age_band": age_band(age),
        }
    )


def base_churn_risk(settings: Settings, horizon_days: int) -> float:
    """The home world's churn over `horizon_days` from its monthly rate (a rule bank's only churn estimate)."""
    from training.datasets import world_info

    monthly = float(world_info(settings).get("monthly_churn_rate") or 0.03)
    return 1.0 - (1.0 - monthly / 30.0) ** horizon_days


def _registered(settings: Settings, name: str, version: str | None) -> Any:
    from nextbest.models.artefact import load_model

    return load_model(name, "champion", settings, version=version)


def _churn_slot(settings: Settings, churn: str, version: str | None, notes: list[str]) -> Any:
    """The churn champion (or `version`); without one, the logged churn rate (noted)."""
    try:
        return _registered(settings, churn, version)
    except NotReadyError as exc:
        notes.append(f"no {churn} model to load ({exc}); the churn slot holds the logged churn rate")
        return ConstantScorer(churn, base_churn_risk(settings, settings.training.churn_horizon_days))


def build_policies(
    settings: Settings,
    project: Project,
    names: Sequence[str],
    *,
    candidate_policy: Path | None = None,
    candidate_versions: Mapping[str, str] | None = None,
    serving_versions: Mapping[str, str] | None = None,
    stage3_trials: int = 2,
    notes: list[str] | None = None,
) -> list[TwinPolicy]:
    """The `TwinPolicy` of each name (see the module docstring); `notes` collects what was substituted."""
    from nextbest.policy import load_policy

    notes = notes if notes is not None else []
    action, churn = _slots(project)
    _serving, catalogue, policy = project.decisions()
    horizon = settings.training.churn_horizon_days
    serving_versions = dict(serving_versions or {})
    out: list[TwinPolicy] = []
    contacts: pd.DataFrame | None = None
    for name in names:
        models: dict[str, Any] = {}
        config, source = policy, "project policy"
        if name in ("1", "2"):
            contacts = logged_contacts(settings) if contacts is None else contacts
            values = {a.id: float(a.value) for a in catalogue.actions}
            models[action] = RateScorer.fit(contacts, values, catalogue.action_ids, grouped=name == "2")
            if churn:
                models[churn] = ConstantScorer(churn, base_churn_risk(settings, horizon), version="logged rate")
            source = f"rates from {len(contacts):,} logged contacts"
        elif name == "3":
            models[action] = _stage3_model(settings, stage3_trials)
            if churn:
                models[churn] = _churn_slot(settings, churn, serving_versions.get(churn), notes)
        elif name in ("5", LIST_ARM, "candidate"):
            versions = serving_versions if name != "candidate" else {**serving_versions, **(candidate_versions or {})}
            models[action] = _registered(settings, action, versions.get(action))
            if churn:
                models[churn] = _churn_slot(settings, churn, versions.get(churn), notes)
            if name == "candidate" and candidate_policy is not None:
                config, source = load_policy(candidate_policy), f"policy file {candidate_policy}"
            if name == LIST_ARM:
                config = list_price_policy(policy)
                source = "project policy with pricing.personalise false (every priced action at its list price)"
        elif name == "oracle":
            models[action] = TruthScorer(action, "accept", action_ids=tuple(catalogue.action_ids))
            if churn:
                models[churn] = TruthScorer(churn, "churn", horizon_days=horizon)
            source = "the simulator's truth"
        versions = ", ".join(f"{k} {getattr(m, 'version', None) or 'trained for this run'}" for k, m in models.items())
        config = _estimate_pinned(config, settings, project)
        out.append(TwinPolicy(name, LABELS[name], config, models, f"{source}; {versions}"))
    return out


def list_price_policy(config: PolicyConfig) -> PolicyConfig:
    """The policy with `pricing.personalise: false`: the same decisions, every priced action at its list price."""
    return config.model_copy(update={"pricing": config.pricing.model_copy(update={"personalise": False})})


def _estimate_pinned(config: PolicyConfig, settings: Settings, project: Project) -> PolicyConfig:
    """The policy with its price-response estimate as an absolute path in the project's home: the twin's engines
    run in the run folder's own home, where a relative (or the default) estimate path would find nothing, and the
    serving policy would silently price at list."""
    from nextbest.pricing import price_response_path

    if not config.pricing.personalise:
        return config
    path = price_response_path(project.home(settings), config.pricing).resolve()
    return config.model_copy(update={"pricing": config.pricing.model_copy(update={"estimate": str(path)})})


def pricing_active(settings: Settings, project: Project) -> bool:
    """Whether the serving policy prices personally: the catalogue prices something, the policy personalises and
    a price-response estimate exists (else the list-price arm would decide exactly as stage 5)."""
    from nextbest.pricing import price_response_path

    _serving, catalogue, policy = project.decisions()
    if not catalogue.pricing or not policy.pricing.personalise:
        return False
    return price_response_path(project.home(settings), policy.pricing).is_file()


def _stage3_model(settings: Settings, trials: int) -> Any:
    """Stage 3's NBA model: trained without the real-time context features, with the ladder's recipe."""
    from training.datasets import build_nba_training_set
    from training.evaluate import train_stage3_model

    return train_stage3_model(settings, build_nba_training_set(settings), trials, settings.training.seed)
