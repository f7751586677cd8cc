"""Onboarded projects for the tests: a bank's tables -> feature tables -> Feast -> online store -> champion models.

`onboard_project` runs the same steps as `nextbest features build|apply|materialize --project FILE` and
`nextbest train --project FILE MODEL` (through `FeatureProject` and the onboarding trainer) into a temporary home,
with few Optuna trials: these fixtures serve behaviour tests, not model quality. The session fixtures in
`conftest.py` (`berka`, `flat_project`) build each project once per test session and share it between modules.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from nextbest.project import Project, load_project
from nextbest.settings import REPO_ROOT, ServingSettings, Settings

BERKA_DIR = Path(os.environ.get("NEXTBEST_BERKA_DIR") or REPO_ROOT.parent / "shared/data/berka")
BERKA = REPO_ROOT / "configs/berka.yaml"
FLAT = REPO_ROOT / "configs/examples/flat_contacts.yaml"


@dataclass(frozen=True)
class OnboardedProject:
    project: Project
    settings: Settings
    seconds: float

    def with_serving(self, **serving: object) -> Settings:
        """The project's settings with serving overrides (e.g. its own decision log, auth)."""
        return self.settings.model_copy(update={"serving": self.settings.serving.model_copy(update=serving)})


def berka_available() -> bool:
    return (BERKA_DIR / "account.csv").is_file()


def onboard_project(config: Path, home: Path, trials: int = 2) -> OnboardedProject:
    """Every step a project needs before it can be served, into `home`."""
    from nextbest.features.project import feature_project
    from nextbest.jobs.onboard import train

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if config == BERKA:
        os.environ.setdefault("NEXTBEST_BERKA_DIR", str(BERKA_DIR))
    t0 = time.perf_counter()
    project = load_project(config)
    settings = Settings(
        home=home, project=config, serving=ServingSettings(reload_interval_s=0, feature_timeout_ms=2000.0)
    )
    features = feature_project(project, settings)
    features.build()
    features.apply()
    features.materialize()
    assert project.tables is not None
    for model in project.model_names:
        train(project.tables, settings, model, trials=trials, validate_model=False)
    return OnboardedProject(project=project, settings=settings, seconds=time.perf_counter() - t0)
