"""Start and stop the real BentoML server as a subprocess: for `nextbest serve`, the demo, tests and benchmarks.

The child process gets the caller's settings through a YAML file (`NEXTBEST_CONFIG`) and no other `NEXTBEST_*`
variables, so `Settings(home=tmp, ...)` in a test or the demo reaches the service exactly. Worker count goes to
BentoML through `BENTOML_CONFIG_OVERRIDES` (its documented override of the service config); MLflow's request
timeouts and retries are bounded (`nextbest.models.registry.REGISTRY_CALL_BOUNDS`, unless the caller set them).
`ServiceProcess` waits for `/readyz` (models and store loaded) and stops the server with SIGTERM, which lets
BentoML run the service's shutdown hook (the decision log drains its queue) before exiting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import yaml

from nextbest.errors import NotReadyError
from nextbest.models.registry import bound_registry_calls
from nextbest.settings import REPO_ROOT, Settings

logger = logging.getLogger(__name__)

SERVICE_TARGET = "serving.service:NextbestService"
SERVICE_NAME = "nextbest"


def service_env(settings: Settings, workers: int, service_name: str = SERVICE_NAME) -> dict[str, str]:
    """Environment for a child `bentoml serve` that reproduces these settings exactly."""
    folder = settings.home / "serving"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "settings.yaml"
    # The settings can hold secrets (the decision-id secret, database URIs with passwords): owner-only.
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    config.chmod(0o600)  # an older file keeps its mode on O_CREAT
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTBEST_") or k == "NEXTBEST_CATALOGUE"}
    env["NEXTBEST_CONFIG"] = str(config)
    env["BENTOML_CONFIG_OVERRIDES"] = json.dumps({"services": {service_name: {"workers": workers}}})
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars in the service log
    # Bounded registry calls (HTTP timeout and retries, PostgreSQL connect timeout): an unreachable or hung
    # registry fails a load attempt or a poll in seconds instead of holding a worker for minutes.
    bound_registry_calls(env)
    # One scoring thread per worker: parallelism comes from workers; OpenMP spinning hurts on 2 shared cores.
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def service_command(host: str, port: int, target: str = SERVICE_TARGET) -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port)]


def run_service(settings: Settings, host: str, port: int, workers: int = 1) -> int:
    """Run the server in the foreground until it exits, Ctrl-C or SIGTERM; returns its exit status.

    SIGINT and SIGTERM to this process are forwarded to the server as SIGTERM (its graceful stop: the decision
    log drains), installed explicitly because a shell starts background jobs with SIGINT ignored, and a
    supervisor (systemd, a container runtime) stops services with SIGTERM, which would otherwise orphan the server.
    """
    proc = subprocess.Popen(service_command(host, port), cwd=REPO_ROOT, env=service_env(settings, workers))
    stop_deadline: float | None = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stop_deadline
        if proc.poll() is None:
            logger.info("signal %s: stopping the decision service (pid %s)", signum, proc.pid)
            proc.send_signal(signal.SIGTERM)
        if stop_deadline is None:
            stop_deadline = time.monotonic() + 30.0

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                return proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if stop_deadline is not None and time.monotonic() > stop_deadline:
                    logger.warning("the decision service did not stop within 30 s of SIGTERM; killing it")
                    proc.kill()
                    return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class ServiceProcess:
    """A `bentoml serve` child process; use as a context manager or call `start()` / `stop()`."""

    def __init__(
        self,
        settings: Settings,
        port: int,
        host: str = "127.0.0.1",
        workers: int = 1,
        log_path: Path | None = None,
        command: list[str] | None = None,
        service_name: str = SERVICE_NAME,
    ) -> None:
        """`command` replaces `bentoml serve serving.service:NextbestService` (e.g. another ASGI server)."""
        self.settings = settings
        self.command = command or service_command(host, port)
        self.service_name = service_name
        self.host = host
        self.port = port
        self.workers = workers
        self.log_path = log_path or settings.home / "serving" / f"service-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 180.0) -> ServiceProcess:
        """Start the server and wait until /readyz answers 200 (models and store loaded)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=service_env(self.settings, self.workers, self.service_name),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our own process group: stop() ends the workers too, nothing else
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NotReadyError(f"decision service exited with {self.proc.returncode}; see {self.log_path}")
            if self.is_ready():
                logger.info("decision service ready at %s", self.url)
                return self
            time.sleep(0.5)
        self.stop()
        raise NotReadyError(f"decision service not ready after {timeout:.0f} s; see {self.log_path}")

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the server's process group and wait (the decision log drains first); kill if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        pgid = os.getpgid(self.proc.pid)
        # BentoML starts each worker in a process group of its own: note them now, while they are children.
        groups = {pgid, *_descendant_groups(self.proc.pid)}
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("decision service did not stop in %.0f s; killing it and its workers", timeout)
            for group in groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
            self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _descendant_groups(pid: int) -> set[int]:
    """The process groups of a process's descendants (its workers), on this host."""
    import psutil

    groups = set()
    try:
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                groups.add(os.getpgid(child.pid))
    except psutil.Error:
        pass
    return groups


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
