"""The whole `nextbest twin`: build the policies, live every seed, score, write the report, log it to MLflow.

`run_twin(settings, options)`:
1. the project must be the simulated bank (the twin's world is the simulator; its truth is the oracle);
2. the policies (`nextbest.twin.policies.build_policies`): the ladder stages asked for, the serving policy (stage 5:
   the registered champions or the versions given), and with `candidate_policy` / `candidate_versions` a candidate
   compared with it (the what-if);
3. every seed (`nextbest.twin.run.run_seed`): a warm world, forked for the no-contact control and each policy;
4. the scorecard (`nextbest.twin.scorecard`): KPIs per policy with paired standard errors, margins against the
   serving policy and against the control, the candidate's verdict, every policy's fairness check and the what-if
   gate (a candidate with new adverse impact is refused; `<home>/twin/gate.jsonl` records the decision);
5. the report (`nextbest.twin.report`): `twin.json`, `kpis.csv`, `margins.csv`, `value_over_time.png` under the run
   folder `<home>/twin/<run id>/`, one MLflow run in `<prefix>-twin`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from nextbest.base import Frozen
from nextbest.errors import ConfigError
from nextbest.twin.run import ProgressFn, TwinConfig

if TYPE_CHECKING:
    from nextbest.project import Project
    from nextbest.settings import Settings
    from nextbest.twin.report import TwinReport

logger = logging.getLogger(__name__)

DEFAULT_POLICIES: tuple[str, ...] = ("1", "2", "3", "5", "oracle")


class TwinOptions(Frozen):
    """What `nextbest twin` runs (world and engine knobs in `config`)."""

    config: TwinConfig = TwinConfig()
    #: None: the ladder (`DEFAULT_POLICIES`), and the list-price arm `5list` when the serving policy prices personally
    policies: tuple[str, ...] | None = None
    #: a candidate policy file, compared with the project's (the what-if); None: no candidate file
    candidate_policy: Path | None = None
    #: registered model versions the candidate serves (model name -> version); the rest as the serving policy
    candidate_versions: Mapping[str, str] = Field(default_factory=dict)
    #: the versions the serving policy (stage 5) serves; default the champions
    serving_versions: Mapping[str, str] = Field(default_factory=dict)
    stage3_trials: int = Field(2, ge=1)
    log_mlflow: bool = True
    run_id: str | None = None  # the run folder's name (default: the UTC time)


@dataclass
class TwinResult:
    """A finished twin run: its report, where it went, how long it took."""

    report: TwinReport
    run_dir: Path
    mlflow_run_id: str | None = None
    seconds: float = 0.0
    policies_seconds: float = 0.0  # building the policies (stage 3 trains a model; 5 loads the champions)
    seed_seconds: list[float] = field(default_factory=list)  # each seed: warm-up, control and every policy
    notes: list[str] = field(default_factory=list)


def twin_project(settings: Settings) -> Project:
    """The settings' project, which must be the simulated bank (the twin lives the simulator's world)."""
    from nextbest.project import simulated_project

    return simulated_project(
        settings,
        "the twin",
        "compare policies on served traffic with `nextbest scorecard --by policy` (a live split) instead",
    )


def run_dir_of(settings: Settings, run_id: str | None) -> Path:
    """`<home>/twin/<run id>` (default run id: the UTC time)."""
    name = run_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"twin run id {name!r}: a plain folder name")
    return settings.home / "twin" / name


def check_options(options: TwinOptions) -> list[str]:
    """The policies to run, in order; ConfigError (one line) for an unknown policy or a bad candidate file, before
    any world is simulated."""
    from nextbest.twin.policies import policy_names

    candidate = options.candidate_policy is not None or bool(options.candidate_versions)
    names = policy_names(DEFAULT_POLICIES if options.policies is None else options.policies, candidate)
    if options.candidate_policy is not None:
        from nextbest.policy import load_policy

        if not options.candidate_policy.is_file():
            raise ConfigError(f"candidate policy file {options.candidate_policy} does not exist")
        try:
            load_policy(options.candidate_policy)
        except ConfigError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip() and "errors.pydantic" not in line]
            raise ConfigError("; ".join(lines)) from None
    return names


def run_twin(settings: Settings, options: TwinOptions, progress: ProgressFn | None = None) -> TwinResult:
    """Every seed of the twin, scored and reported (see the module docstring)."""
    from nextbest.twin import report as rp
    from nextbest.twin.policies import LIST_ARM, build_policies, policy_names, pricing_active
    from nextbest.twin.run import run_seed

    t0 = time.perf_counter()
    names = check_options(options)
    project = twin_project(settings)
    notes: list[str] = []
    active = pricing_active(settings, project)
    if options.policies is None and active:  # the default set: list price beside personalised pricing
        names = policy_names([*names, LIST_ARM], "candidate" in names)
    elif LIST_ARM in names and not active:
        notes.append(
            "5list: the serving policy does not price personally (no price-response estimate, or "
            "pricing.personalise false), so the list-price arm decides as stage 5"
        )
    policies = build_policies(
        settings,
        project,
        names,
        candidate_policy=options.candidate_policy,
        candidate_versions=options.candidate_versions,
        serving_versions=options.serving_versions,
        stage3_trials=options.stage3_trials,
        notes=notes,
    )
    notes[:] = list(dict.fromkeys(notes))  # stage 3 and 5 say the same of a missing churn model
    policies_seconds = time.perf_counter() - t0
    run_dir = run_dir_of(settings, options.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    seeds, seed_seconds = [], []
    for seed in options.config.seeds:
        t_seed = time.perf_counter()
        seeds.append(run_seed(options.config, seed, policies, settings, project, run_dir, progress))
        seed_seconds.append(time.perf_counter() - t_seed)
    report = rp.build_report(
        options, policies, seeds, notes, seconds=time.perf_counter() - t0, fairness=project.fairness
    )
    rp.write_report(report, run_dir)
    rp.record_gate(settings, report, run_dir)
    result = TwinResult(
        report,
        run_dir,
        seconds=time.perf_counter() - t0,
        policies_seconds=policies_seconds,
        seed_seconds=seed_seconds,
        notes=notes,
    )
    if options.log_mlflow:
        result.mlflow_run_id = rp.log_report(settings, report, run_dir)
    logger.info("twin: %d policies x %d seeds in %.0f s -> %s", len(policies), len(seeds), result.seconds, run_dir)
    return result


def parse_versions(pairs: Sequence[str], what: str) -> dict[str, str]:
    """`model=version` pairs (e.g. `nba=3`) as a mapping; ConfigError naming the bad one."""
    out = {}
    for pair in pairs:
        name, sep, version = pair.partition("=")
        if not sep or not name.strip() or not version.strip():
            raise ConfigError(f"{what}: {pair!r} is not MODEL=VERSION (e.g. nba=3)")
        out[name.strip()] = version.strip()
    return out
