"""The project contract: one typed description of a bank as the platform sees it, for every bank alike.

A project names its entities (keys, int or string), how its features are made (the hand-written genome in
`feature_repo/`, or a mapping of the bank's own tables generated into a Feast project), its models (registered
name, entity, feature service, what they score, split, gate), its action catalogue (which model scores which action,
values, channels, templates, eligibility), its decision policy, its drift policy and what the decision service
serves. Every command takes a project (`--project FILE`, default the simulated bank, `configs/simbank.yaml`); the
engine, the policy, training, monitoring and retraining read it and nothing else names a bank.

A project file is YAML. The simulated bank's says `features: {kind: genome}`; an onboarded bank's carries the
table mapping (`data_dir`, `tables`, `derived`, `entities`, `feature_views`, `models`, see
`nextbest.onboarding.config`) beside the contract's own sections. `catalogue`, `policy`, `drift` and `segments` are
either a path (relative to the project file) or an inline mapping; a missing `catalogue`/`policy`/`segments` means the
simulated bank's shipped files for a genome project (none for a bank's tables). `serving.assignment` declares the
universal holdout, campaign control share and live traffic splits (`nextbest.assignment`). Everything is validated at
load: an unknown key, model, action, view, channel or segment is an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from nextbest.assignment import AssignmentConfig
from nextbest.base import Frozen
from nextbest.catalogue import Catalogue, load_catalogue
from nextbest.drift_policy import DriftPolicy
from nextbest.errors import ConfigError
from nextbest.fairness import FairnessSpec
from nextbest.onboarding.config import CONTRACT_KEYS, OnboardingConfig, parse_config
from nextbest.policy import PolicyConfig, load_policy, parse_policy
from nextbest.segments import SegmentBook, load_segments, parse_segments
from nextbest.settings import REPO_ROOT, Settings

DEFAULT_PROJECT = REPO_ROOT / "configs" / "simbank.yaml"
KeyType = Literal["int", "str"]
_NAME = r"^[a-z][a-z0-9_]*$"
#: the contract's own top-level keys (a table project's other keys are its mapping)
PROJECT_KEYS: frozenset[str] = CONTRACT_KEYS | {"segments"}


class EntitySpec(Frozen):
    """Something models score and requests name: its join key and the key's type."""

    key: str
    key_type: KeyType = "int"
    description: str = ""


class GateSpec(Frozen):
    """How much better a challenger must be on the most recent holdout to replace the champion (an action model: on
    the value of its greedy policy; `training.registry`), and the floor every version must clear
    (`training.registry.GateRule`): AUC - floor_z x SE above chance (null: no chance floor), and at most
    `baseline_tolerance` below the plain XGBoost baseline's AUC (null: not checked)."""

    min_auc_gain: float = 0.002
    max_logloss_increase: float = 0.002
    floor_z: float | None = Field(1.96, ge=0)
    baseline_tolerance: float | None = Field(0.02, ge=0)
    # A model that scores actions is judged on its greedy policy's value on the holdout's logged decisions
    # (doubly robust, paired with the champion's): the gain must reach `min_value_z` standard errors (a smaller,
    # non-negative gain passes with an AUC gain >= `min_auc_gain`), and pooled AUC may drop at most `max_auc_drop`.
    # false: AUC and log-loss alone, as for an entity model.
    policy_value: bool = True
    min_value_z: float = Field(1.0, ge=0)
    max_auc_drop: float = Field(0.01, ge=0)


class ModelSpec(Frozen):
    """One registered model of the project."""

    name: str = Field(pattern=_NAME, description="Registered model name.")
    entity: str
    feature_service: str
    # entity: one probability per entity row; action: one row per (entity, action) with the action's attributes.
    scores: Literal["entity", "action"] = "entity"
    # What the label is. The genome's builders: `closes_within` (the customer closes the relationship within the
    # churn horizon of a snapshot) and `offer_accepted` (a logged or served offer was accepted); a table model's
    # label kind (`event_within`, `outcome_column`; the mapping defines it).
    label: str
    # auto (table models): by time unless the rows span fewer than 3 dates (`nextbest.onboarding.plan`).
    split: Literal["auto", "time", "stratified"] = "time"
    gate: GateSpec = GateSpec()
    description: str = ""


class ServingSpec(Frozen):
    """What the decision service serves: the entity a request's `customer_id` names, and what else it reads."""

    entity: str
    # Views of that entity read with the models' views (profile, consent, eligibility features, keys of others).
    feature_views: tuple[str, ...] = ()
    feature_timeout_ms: float | None = Field(None, gt=0, description="Online read budget; default the settings'.")
    # Universal holdout, campaign control share and live traffic splits (`nextbest.assignment`).
    assignment: AssignmentConfig = AssignmentConfig()


class Project(Frozen):
    """A bank as the platform sees it (see the module docstring)."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    kind: Literal["genome", "tables"]
    entities: dict[str, EntitySpec]
    models: tuple[ModelSpec, ...] = Field(min_length=1)
    # The model that scores actions naming none in the catalogue (None: every action names its model).
    action_model: str | None = None
    # What the decision service needs; a table project may leave all three out (train and monitor only).
    catalogue: Catalogue | None
    policy: PolicyConfig | None
    drift: DriftPolicy = DriftPolicy()
    serving: ServingSpec | None
    tables: OnboardingConfig | None = None
    # Named customer segments (`nextbest.segments`): parsed and checked for cycles here, bound to features at use.
    segments: SegmentBook | None = None
    # The fairness check (nextbest.fairness, docs/fairness.md): age bands, protected attributes, the threshold.
    fairness: FairnessSpec = FairnessSpec()
    source: Path | None = Field(None, description="The project file it was read from.")

    @model_validator(mode="after")
    def _references_resolve(self) -> Project:
        models = {m.name: m for m in self.models}
        if len(models) != len(self.models):
            raise ValueError("a model name is used twice")
        for m in self.models:
            if m.entity not in self.entities:
                raise ValueError(f"model {m.name!r}: unknown entity {m.entity!r}; known: {sorted(self.entities)}")
        if (self.kind == "tables") != (self.tables is not None):
            raise ValueError("a `tables` project needs the table mapping, a `genome` project none")
        self._check_segments()
        self._check_fairness()
        if self.serving is None or self.catalogue is None or self.policy is None:
            if self.kind == "genome" or not (self.serving is None and self.catalogue is None and self.policy is None):
                raise ValueError("serving, catalogue and policy go together: give all three (or, train-only, none)")
            return self
        if self.serving.entity not in self.entities:
            raise ValueError(f"serving.entity: unknown entity {self.serving.entity!r}; known: {sorted(self.entities)}")
        self._check_action_models(models)
        self._check_policy_models(models)
        self.policy.check_against(self.catalogue)
        return self

    def _check_segments(self) -> None:
        book = self.segments
        if book is not None and book.entity is not None and book.entity not in self.entities:
            raise ValueError(f"segments.entity: unknown entity {book.entity!r}; known: {sorted(self.entities)}")
        named = self.policy.segment_names if self.policy is not None else ()
        unknown = sorted(set(named) - set(book.names if book is not None else ()))
        if unknown:
            known = ", ".join(book.names) if book is not None else "none (no `segments:` section)"
            raise ValueError(f"policy refers to unknown segment(s) {unknown}; the project's segments: {known}")

    def _check_fairness(self) -> None:
        """Protected attributes: a table source must exist (and a file table declare the key and column), and no
        model's feature service may carry one (its name, a feature declared to encode it, or a feature read from
        its source column)."""
        spec = self.fairness
        carried = spec.protected_features()
        for attr in spec.protected:
            table = attr.source.table
            if table is None:
                continue
            if self.tables is None:
                raise ValueError(f"fairness.protected {attr.name!r}: source table {table!r} needs a tables project")
            known = set(self.tables.tables) | set(self.tables.derived)
            if table not in known:
                raise ValueError(f"fairness.protected {attr.name!r}: unknown table {table!r}; known: {sorted(known)}")
            if table in self.tables.tables:
                columns = self.tables.tables[table].columns
                for col in (attr.source.key, attr.source.column):
                    if col not in columns and col not in (self.tables.tables[table].row_key,):
                        raise ValueError(
                            f"fairness.protected {attr.name!r}: table {table!r} has no column {col!r}; "
                            f"its columns: {sorted(columns)}"
                        )
        for model in self.models:
            for feature, attribute in self._model_inputs(model, carried):
                raise ValueError(
                    f"model {model.name!r}: feature service {model.feature_service!r} includes {feature!r}, which "
                    f"carries the protected attribute {attribute!r} (fairness.protected): protected attributes are "
                    "kept out of the models' inputs; the fairness check reads them from their source"
                )

    def _model_inputs(self, model: ModelSpec, carried: Mapping[str, str]) -> list[tuple[str, str]]:
        """(feature, protected attribute) of every input of the model that carries one: by name (the attribute's
        own or a feature declared to encode it) or, for a table model, read from the attribute's source column."""
        if self.tables is None:
            from feature_repo.specs import service_features

            try:
                names = service_features(model.feature_service)
            except KeyError:
                names = []
            return [(f, carried[f]) for f in names if f in carried]
        from nextbest.onboarding.config import feature_names_of

        spec = next((m for m in self.tables.models if m.name == model.name), None)
        if spec is None:
            return []
        sources = {(a.source.table, a.source.column): a.name for a in self.fairness.protected if a.source.table}
        out = []
        for view_name in spec.feature_views:
            view = self.tables.view(view_name)
            out += [(f, carried[f]) for f in feature_names_of(view) if f in carried]
            out += [
                (a.name, sources[(view.source, a.column)])
                for a in view.attributes
                if (view.source, a.column) in sources
            ]
        return out

    def _check_action_models(self, models: Mapping[str, ModelSpec]) -> None:
        assert self.catalogue is not None and self.serving is not None
        if self.action_model is not None and self.action_model not in models:
            raise ValueError(f"action_model: unknown model {self.action_model!r}; known: {sorted(models)}")
        for action_id, name in self.catalogue.models(self.action_model).items():
            if name not in models:
                raise ValueError(f"catalogue action {action_id!r}: unknown model {name!r}; known: {sorted(models)}")
            if models[name].entity != self.serving.entity:
                raise ValueError(
                    f"catalogue action {action_id!r}: model {name!r} is keyed by {models[name].entity!r}, "
                    f"not the served entity {self.serving.entity!r}"
                )

    def _check_policy_models(self, models: Mapping[str, ModelSpec]) -> None:
        assert self.policy is not None and self.serving is not None
        churn = self.policy.churn_model
        if churn is not None and (churn not in models or models[churn].entity != self.serving.entity):
            raise ValueError(f"policy.churn_model: {churn!r} is not a model keyed by {self.serving.entity!r}")
        for rule in self.policy.model_rules:
            if rule.model not in models:
                raise ValueError(f"policy.model_rules {rule.name!r}: unknown model {rule.model!r}")
            if models[rule.model].entity != self.serving.entity and rule.key_feature is None:
                raise ValueError(
                    f"policy.model_rules {rule.name!r}: model {rule.model!r} is keyed by "
                    f"{models[rule.model].entity!r}; give key_feature (the served entity's feature holding its key)"
                )

    # ---------------------------------------------------------------- lookups
    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(f"project {self.name!r} has no model {name!r}; models: {self.model_names}")

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def serves(self) -> bool:
        """Whether the project declares what the decision service serves (serving, catalogue, policy)."""
        return self.serving is not None

    def decisions(self) -> tuple[ServingSpec, Catalogue, PolicyConfig]:
        """The serving sections (ConfigError naming the project file when it declares none)."""
        if self.serving is None or self.catalogue is None or self.policy is None:
            raise ConfigError(
                f"project {self.name!r} ({self.source}) declares no serving, catalogue and policy sections: it can be "
                "trained and monitored, not served (docs/onboarding.md, 'Serving your project')"
            )
        return self.serving, self.catalogue, self.policy

    @property
    def served(self) -> EntitySpec:
        """The entity requests name (its key and key type)."""
        return self.entities[self.decisions()[0].entity]

    @property
    def action_models(self) -> dict[str, str]:
        """action id -> the model that scores it."""
        return self.decisions()[1].models(self.action_model)

    @property
    def served_models(self) -> tuple[str, ...]:
        """The models the decision service loads: those scoring actions, the churn model, the model rules'.

        A project that serves nothing: every model (what monitoring and retraining then cover)."""
        if not self.serves:
            return self.model_names
        policy = self.decisions()[2]
        names = [*self.action_models.values()]
        if policy.churn_model:
            names.append(policy.churn_model)
        names += [r.model for r in policy.model_rules]
        return tuple(dict.fromkeys(n for n in self.model_names if n in names))

    def home(self, settings: Settings) -> Path:
        """Where this project's generated state lives: the installation's home for the simulated bank, else
        `<home>/projects/<name>/` (its Feast project, decision log, reports)."""
        return settings.home if self.kind == "genome" else settings.home / "projects" / self.name

    def decision_log_uri(self, settings: Settings) -> str:
        """The configured log (`serving.decision_log_uri`, e.g. PostgreSQL), else this project's own SQLite log, so
        the contact history of one bank never mixes with another's keys."""
        if settings.serving.decision_log_uri:
            return settings.serving.decision_log_uri
        return f"sqlite:///{self.home(settings) / 'decisions.db'}"

    def parse_key(self, value: object, field: str = "customer_id") -> int | str:
        """A request's entity key as the project types it (ValueError naming the field otherwise)."""
        entity = self.decisions()[0].entity
        if self.served.key_type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{field}: project {self.name!r} keys {entity} by integer")
            return value
        if not isinstance(value, str):
            raise ValueError(f"{field}: project {self.name!r} keys {entity} by string")
        return value


# -------------------------------------------------------------------- loading


def _section(raw: Any, where: Path, what: str) -> tuple[Any, Path]:
    """An inline mapping, or the YAML file a path names (relative to the project file)."""
    if isinstance(raw, str):
        path = Path(raw)
        path = path if path.is_absolute() else (where.parent / path).resolve()
        if not path.is_file():
            raise ConfigError(f"{where}: {what} file {path} not found")
        try:
            return yaml.safe_load(path.read_text()) or {}, path
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return raw, where


def _catalogue(raw: Any, where: Path, kind: str) -> Catalogue | None:
    if raw is None:
        return load_catalogue() if kind == "genome" else None
    if isinstance(raw, str):
        path = Path(raw) if Path(raw).is_absolute() else (where.parent / raw).resolve()
        try:
            return load_catalogue(path)
        except FileNotFoundError as exc:
            raise ConfigError(f"{where}: catalogue file {path} not found") from exc
        except ValidationError as exc:
            raise ConfigError(f"invalid catalogue {path}:\n{exc}") from exc
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: invalid catalogue:\n{exc}") from exc


def _policy(raw: Any, where: Path, override: Path | None, kind: str) -> PolicyConfig | None:
    if override is not None:
        return load_policy(override)
    if raw is None:
        return load_policy() if kind == "genome" else None
    data, source = _section(raw, where, "policy")
    return parse_policy(data, str(source))


def _segments(raw: Any, where: Path, kind: str) -> SegmentBook | None:
    if raw is None:
        return load_segments() if kind == "genome" else None
    data, source = _section(raw, where, "segments")
    return parse_segments(data, str(source))


def _fairness(raw: Any, where: Path) -> FairnessSpec:
    """The `fairness:` section (inline or a path); a file source resolves relative to the project file."""
    if raw is None:
        return FairnessSpec()
    data, source = _section(raw, where, "fairness")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: fairness must be a mapping")
    try:
        spec = FairnessSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid fairness section:\n{exc}") from exc
    protected = []
    for attr in spec.protected:
        file = attr.source.file
        if file is not None and not file.is_absolute():
            attr = attr.model_copy(update={"source": attr.source.model_copy(update={"file": source.parent / file})})
        protected.append(attr)
    return spec.model_copy(update={"protected": tuple(protected)})


def _genome_models(raw: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    models = raw.get("models")
    if not isinstance(models, list):
        raise ConfigError("a genome project lists its models under `models:`")
    return models, raw.get("entities") or {}


def _table_models(mapping: OnboardingConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The contract's models and entities of a table project, from its mapping (one source of truth)."""
    models = [
        {
            "name": m.name,
            "entity": m.entity,
            "feature_service": m.feature_service,
            "label": m.label.kind,
            "split": m.split,
            "description": m.description,
        }
        for m in mapping.models
    ]
    entities = {
        name: {"key": e.key, "key_type": e.key_type, "description": e.description}
        for name, e in mapping.entities.items()
    }
    return models, entities


def parse_project(raw: Any, path: Path, policy_override: Path | None = None) -> Project:
    """Validate a project mapping read from `path` (section paths resolve relative to it)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    features = raw.get("features") or {}
    kind = "genome" if isinstance(features, dict) and features.get("kind") == "genome" else "tables"
    mapping: OnboardingConfig | None = None
    if kind == "tables":
        mapping = parse_config({k: v for k, v in raw.items() if k not in PROJECT_KEYS}, path)
        models, entities = _table_models(mapping)
        name, description = mapping.project, mapping.description
    else:
        unknown = sorted(set(raw) - PROJECT_KEYS - {"project", "description", "models", "entities"})
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown} in a genome project")
        models, entities = _genome_models(raw)
        name, description = raw.get("project"), raw.get("description", "")
    drift_raw, drift_where = _section(raw.get("drift") or {}, path, "drift")
    try:
        return Project.model_validate(
            {
                "name": name,
                "description": description,
                "kind": kind,
                "entities": entities,
                "models": models,
                "action_model": raw.get("action_model"),
                "catalogue": _catalogue(raw.get("catalogue"), path, kind),
                "policy": _policy(raw.get("policy"), path, policy_override, kind),
                "drift": DriftPolicy.model_validate(drift_raw),
                "serving": raw.get("serving"),
                "tables": mapping,
                "segments": _segments(raw.get("segments"), path, kind),
                "fairness": _fairness(raw.get("fairness"), path),
                "source": path,
            }
        )
    except ValidationError as exc:
        raise ConfigError(f"{path} is not a valid project (drift from {drift_where}):\n{exc}") from exc


def load_project(path: str | Path | None = None, policy_override: Path | None = None) -> Project:
    """Read and validate a project file (default: the simulated bank, `configs/simbank.yaml`)."""
    resolved = Path(path).expanduser().resolve() if path is not None else DEFAULT_PROJECT
    if not resolved.is_file():
        raise ConfigError(f"project file {resolved} not found")
    try:
        raw = yaml.safe_load(resolved.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{resolved} is not valid YAML: {exc}") from exc
    return parse_project(raw, resolved, policy_override)


def project_of(settings: Settings) -> Project:
    """The project these settings name (`settings.project`), with `serving.policy_path` as a policy override."""
    return load_project(settings.project, policy_override=settings.serving.policy_path)


def simulated_project(settings: Settings, job: str, instead: str) -> Project:
    """The settings' project, which must be a simulated (genome) one: `job` needs the simulator's truth. A bank's
    own tables have none: a ConfigError (one line) names the project and says what to run `instead`."""
    project = project_of(settings)
    if project.kind != "genome":
        raise ConfigError(
            f"{job} needs the simulated bank (the simulator's truth); project {project.name!r} has its own tables "
            f"and no truth: {instead}"
        )
    return project
