"""`nextbest serve` runs the server in the foreground and stops it cleanly when it is stopped itself.

A supervisor stops a service with SIGTERM, and a shell starts background jobs with SIGINT ignored; either way the
BentoML server must not outlive the CLI process (an orphan would keep the port and the decision log open).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nextbest.settings import REPO_ROOT
from serving.runner import free_port


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/livez", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_forwards_its_stop_signal_to_the_server(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTBEST_")}
    env["NEXTBEST_HOME"] = str(tmp_path / "home")  # an empty home: the server starts, not ready (no models)
    cli = subprocess.Popen(
        [sys.executable, "-m", "nextbest.cli", "serve", "--port", str(port), "--host", "127.0.0.1"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # signals reach the CLI only, as from a supervisor, not the whole group
        # a background job of a non-interactive shell inherits SIGINT ignored; the CLI must stop on it anyway
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sig == signal.SIGINT else None,
    )
    try:
        deadline = time.monotonic() + 180
        while not _alive(url):
            assert cli.poll() is None, f"nextbest serve exited early with {cli.returncode}"
            assert time.monotonic() < deadline, "the server never answered /livez"
            time.sleep(0.5)
        cli.send_signal(sig)
        cli.wait(timeout=60)  # raises if the CLI hangs
        deadline = time.monotonic() + 10
        while _alive(url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(url), "the BentoML server outlived `nextbest serve`"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cli.pid, signal.SIGKILL)  # the CLI if it hung, and any worker left in its group


def test_api_routes_are_left_out_of_tracing_unless_it_is_switched_on() -> None:
    """BentoML's OpenTelemetry middleware wraps every request unless its route is excluded (docs/benchmarks.md)."""
    from fastapi.routing import APIRoute

    from nextbest.settings import Settings
    from serving import service

    # every API route is in the list (a new endpoint must not silently pay for tracing)
    routes = {r.path for r in service._API.routes if isinstance(r, APIRoute) and r.path != "/docs.json"}
    assert routes and all(any(r.startswith(p) for p in service.API_ROUTES) for r in routes)
    assert {"/v1/recommend", "/recommend", "/v1/customers/"} <= set(service.API_ROUTES)
    assert service.NextbestService.config["tracing"] == {"excluded_urls": list(service.API_ROUTES)}
    assert service.tracing_config(Settings(serving={"tracing": True}), service.API_ROUTES) == {}
