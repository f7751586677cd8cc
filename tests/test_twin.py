"""The policy twin on a small trained world: the same engine code as the service, consequences both ways, what-if.

- The twin decides through the service's engine: one simulated day's decision points, asked by the twin (its
  genome rows, its scorers in the model slots, its log), get the same decisions from a plain serving
  `DecisionEngine` loaded from the registry and given the same rows (`decide_batch(features=...)`, which
  tests/test_engine_batch.py shows decides as `recommend`).
- Consequences both ways, on the same customers (common random numbers): a policy that spams (no caps, no
  floors, no cool-down, contact cost ignored) gets more opt-outs, complaints and churn than a restrained one;
  organic uptake is in the control, so a policy that contacts nobody earns gross value (organic sales) but exactly
  zero incremental value, and a selling policy's incremental value is its sales minus the organic sales it
  pre-empted plus the value of the closures it changed, per customer against the same customer under no contact.
- What-if: `run_twin` with a candidate policy file that is worse (it shows nothing) says the current one wins on
  net value, with a margin of the right sign beyond 1.96 SE, and writes its report.
- `nextbest twin` refuses bad input with one line.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from nextbest.decision_log import DecisionLog
from nextbest.policy import DEFAULT_POLICY_PATH, load_policy
from nextbest.project import project_of
from nextbest.settings import Settings
from nextbest.twin.job import TwinOptions, run_twin
from nextbest.twin.policies import TwinPolicy, build_policies
from nextbest.twin.run import TwinConfig, live_control, live_policy, warm_up
from nextbest.twin.scorecard import Ledger
from tests.evaluation_fixtures import trained_world  # noqa: F401  (the shared small trained world)

CONFIG = TwinConfig(customers=1_200, days=20, warmup_days=30, seeds=(3,))


def _policy_file(tmp: Path, name: str, **changes: Any) -> Path:
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


SPAM = {
    "caps": {"max_per_window": 50, "max_per_day_per_channel": 5, "dismissal_cooldown_days": 0},
    "min_propensity": 0.0,
    "min_priority": 0.0,
    "net_of_contact_cost": False,
}
RESTRAINED = {"caps": {"window_days": 30, "max_per_window": 1, "dismissal_cooldown_days": 60}, "min_priority": 20.0}
SILENT = {"min_priority": 1.0e12, "service_triggers": []}


@pytest.fixture(scope="module")
def twin(trained_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: F811
    """The trained world's project, its serving policy (stage 5), a warm twin world and a run folder."""
    settings = trained_world
    project = project_of(settings)
    serving = build_policies(settings, project, ["5"])[0]
    tmp = tmp_path_factory.mktemp("twin")
    warm = warm_up(CONFIG, 3, project.decisions()[2])
    warm.genome.close()
    return {"settings": settings, "project": project, "serving": serving, "warm": warm, "tmp": tmp}


def test_the_twin_decides_as_the_serving_engine(twin: dict[str, Any]) -> None:
    from nextbest.twin.agent import EngineAgent
    from nextbest.twin.engine import TwinEngine
    from serving.engine import DecisionEngine

    settings, project, serving, tmp = twin["settings"], twin["project"], twin["serving"], twin["tmp"]
    world, genome = copy.deepcopy(twin["warm"].world), copy.deepcopy(twin["warm"].genome)
    log = DecisionLog(f"sqlite:///{tmp / 'twin-day.db'}", key_type="int")
    engine = TwinEngine(settings, project, serving.policy, log, serving.models)
    engine.start()
    asked: dict[str, Any] = {}
    decide = engine.decide_batch

    def capture(requests: Any, features: Any = None, now: Any = None, **kw: Any) -> Any:
        answers = decide(requests, features=features, now=now, **kw)
        asked.update(requests=list(requests), features=[dict(f) for f in features], now=list(now), answers=answers)
        return answers

    engine.decide_batch = capture  # type: ignore[method-assign]
    agent = EngineAgent(world, genome, engine)
    agent.begin_day()
    world.step(agent)
    engine.close()
    genome.close()
    assert len(asked["requests"]) > 50

    relaxed = settings.serving.model_copy(update={"reload_interval_s": 0, "simulated_time": True})
    service = DecisionEngine(
        settings.model_copy(update={"serving": relaxed}),
        project=project,
        decision_log=DecisionLog(f"sqlite:///{tmp / 'service-day.db'}", key_type="int"),
    )
    service.load()
    try:
        assert service.bundle.versions == {n: m.version for n, m in serving.models.items()}
        theirs = service.decide_batch(asked["requests"], features=asked["features"], now=asked["now"])
    finally:
        service.close()

    def shown(answers: Any) -> list[list[tuple[str, float, float]]]:
        return [[(a.action_id, round(a.propensity, 12), round(a.priority, 9)) for a in r.actions] for r in answers]

    mine = shown(asked["answers"])
    assert mine == shown(theirs)
    offers = sum(bool(a) for a in mine)
    assert offers > len(mine) // 4, "the comparison must cover real offers"
    assert len({a[0][0] for a in mine if a}) >= 3, "and more than one action"


def _run(twin: dict[str, Any], name: str, changes: dict[str, Any]) -> Ledger:
    path = _policy_file(twin["tmp"], name, **changes)
    serving: TwinPolicy = twin["serving"]
    policy = TwinPolicy(name, name, load_policy(path), serving.models, f"policy file {path}")
    run_dir = twin["tmp"] / "runs"
    return live_policy(twin["warm"], policy, CONFIG.days, twin["settings"], twin["project"], run_dir, CONFIG)


@pytest.fixture(scope="module")
def lived(twin: dict[str, Any]) -> dict[str, Ledger]:
    catalogue = twin["project"].decisions()[1]
    return {
        "control": live_control(twin["warm"], CONFIG.days, catalogue),
        "spam": _run(twin, "spam", SPAM),
        "restrained": _run(twin, "restrained", RESTRAINED),
        "silent": _run(twin, "silent", SILENT),
    }


def test_spamming_costs_opt_outs_complaints_and_churn(lived: dict[str, Ledger]) -> None:
    spam, calm = lived["spam"].counters, lived["restrained"].counters
    assert spam["contacts"].sum() > 2 * calm["contacts"].sum() > 0
    assert spam["opted_out"].sum() > calm["opted_out"].sum()
    assert spam["complained"].sum() > calm["complained"].sum()
    assert spam["closed"].sum() > calm["closed"].sum()


def test_organic_uptake_is_not_credited(lived: dict[str, Ledger]) -> None:
    control, silent, spam = lived["control"], lived["silent"], lived["spam"]
    assert control.counters["organic_value"].sum() > 0, "the world's customers take products on their own"
    # a policy that contacts nobody lives the control's world: its customers' organic sales are not its doing
    assert silent.counters["contacts"].sum() == 0
    assert silent.value.sum() > 0
    np.testing.assert_array_equal(silent.value - control.value, 0.0)
    # a selling policy is credited with its sales minus the organic ones it pre-empted (a customer who accepted a
    # product cannot take it on their own later) plus the closures it prevented (or minus those it caused)
    sold = spam.counters["offer_value"].sum()
    assert sold > 0
    assert spam.counters["organic_value"].sum() <= control.counters["organic_value"].sum()
    lost_organic = control.counters["organic_value"].sum() - spam.counters["organic_value"].sum()
    churn_delta = ((control.counters["closed"] - spam.counters["closed"]) * spam.relationship_value).sum()
    incremental = (spam.value - control.value).sum()
    assert incremental == pytest.approx(sold - lost_organic + churn_delta)


def test_what_if_says_the_better_policy_file_wins(twin: dict[str, Any]) -> None:
    candidate = _policy_file(twin["tmp"], "candidate-silent", **SILENT)
    options = TwinOptions(
        config=CONFIG.model_copy(update={"customers": 2_000}),
        policies=("5",),
        candidate_policy=candidate,
        log_mlflow=False,
        run_id="what-if",
    )
    result = run_twin(twin["settings"], options)
    report = result.report
    net = report.margin("candidate", "5", "net_value")
    assert net is not None and net["margin"] < -1.96 * net["std_error"]
    assert report.winner == "5"
    assert net["margin"] == pytest.approx(report.value("candidate", "net_value") - report.value("5", "net_value"))
    assert report.value("candidate", "net_value") == 0.0  # it shows nothing: the control's world
    saved = json.loads((result.run_dir / "twin.json").read_text())
    assert saved["winner_on_net_value"] == "5"
    assert {row["kpi"] for row in saved["verdict"]} >= {"net_value", "churn", "opt_outs", "wallet_share"}
    assert (result.run_dir / "value_over_time.png").stat().st_size > 1000


def test_the_what_if_gate_refuses_a_policy_that_excludes_one_age_band_from_credit(twin: dict[str, Any]) -> None:
    """A candidate that withholds every credit offer from the 18-30s (a segment rule) is refused by the what-if gate
    on fairness, whatever it does to net value; the refusal is in twin.json and the gate's log."""
    credit = sorted(a.id for a in twin["project"].decisions()[1].actions if a.credit)
    rules = [{"segment": "young_adults", "actions": credit, "exclude": True}]
    candidate = _policy_file(twin["tmp"], "candidate-no-young-credit", segment_rules=rules)
    config = CONFIG.model_copy(update={"days": 10})
    options = TwinOptions(config=config, policies=("5",), candidate_policy=candidate, log_mlflow=False, run_id="fair")
    report = run_twin(twin["settings"], options).report
    assert report.gate == "refused"
    young = report.fairness["candidate"].ratio("age_band", "18-24")
    assert young == 0.0 and report.fairness["5"].ratio("age_band", "18-24") > 0.0
    assert any("credit offer rate of age_band 18-24: ratio 0.00" in r for r in report.refusals)
    saved = json.loads((twin["settings"].home / "twin" / "fair" / "twin.json").read_text())
    assert saved["gate"]["candidate"] == "refused" and saved["gate"]["reasons"] == report.refusals
    logged = [json.loads(line) for line in (twin["settings"].home / "twin" / "gate.jsonl").read_text().splitlines()]
    assert logged[-1]["decision"] == "refused" and logged[-1]["reasons"] == report.refusals


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "1,x"], "--seeds"),
        (["--policies", "1,7"], "unknown twin policy '7'"),
        (["--customers", "0"], "--customers"),
        (["--policy", "/no/such/policy.yaml"], "does not exist"),
        (["--candidate-model", "nba"], "MODEL=VERSION"),
        (["--policy", "BAD_FILE"], "invalid decision policy"),
    ],
)
def test_cli_refuses_bad_input_in_one_line(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nextbest.cli import main

    if "BAD_FILE" in args:
        bad = _policy_file(tmp_path, "bad", no_such_key=1)
        args = [str(bad) if a == "BAD_FILE" else a for a in args]
    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setattr(sys, "argv", ["nextbest", "twin", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], lines
