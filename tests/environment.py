"""What the test environment must provide: services and data that CI always has."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def skip_unless_ci(reason: str) -> NoReturn:
    """Skip on a developer machine that lacks a service or data set; fail in CI, where it must be present.

    CI (CI=true) runs on a machine with PostgreSQL, Redis and shared/data, so a missing one there is a broken
    environment, not a reason to pass silently.
    """
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)
