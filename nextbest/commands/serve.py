"""CLI commands: serve (the BentoML decision service)."""

from __future__ import annotations

from pathlib import Path

import typer


def bento(output: str = typer.Option("default", "--output", "-o", help="default, or tag (the tag only).")) -> None:
    """Package the decision service as a bento with the locked requirements (uv.lock: the versions tested)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    import yaml

    from nextbest.settings import REPO_ROOT

    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    with tempfile.TemporaryDirectory(prefix="nextbest-bento-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        export = [uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "-o", str(requirements)]
        done = subprocess.run(export, cwd=REPO_ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            typer.echo(f"error: uv export failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}", err=True)
            raise typer.Exit(code=2)
        pins = [
            line.strip()
            for line in requirements.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith(("#", "-"))
        ]
        spec = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())
        spec["python"] = {"packages": pins, "lock_packages": False}  # BentoML takes no requirements file outside
        bentofile = Path(tmp) / "bentofile.yaml"
        bentofile.write_text(yaml.safe_dump(spec, sort_keys=False))
        build = [sys.executable, "-m", "bentoml", "build", "-f", str(bentofile), "--output", output, str(REPO_ROOT)]
        code = subprocess.run(build, cwd=REPO_ROOT).returncode
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("bento")(bento)

    @app.command("serve")
    def serve(
        port: int = typer.Option(None, "--port", "-p", help="HTTP port (default: settings.serving.port, 3000)."),
        host: str = typer.Option(None, "--host", help="Bind address (default: settings.serving.host)."),
        workers: int = typer.Option(None, "--workers", "-w", min=1, help="Worker processes (default: settings)."),
        project: Path = typer.Option(
            None, "--project", help="The project file to serve (default: the simulated bank, configs/simbank.yaml)."
        ),
    ) -> None:
        """Run the decision service (`bentoml serve serving.service:NextbestService`) until Ctrl-C.

        Needs the project's champion models (`nextbest train ...`) and a materialized online store
        (`nextbest features materialize`); until both exist /readyz answers 503 and loading retries.
        """
        from nextbest.console import console
        from nextbest.project import project_of
        from nextbest.settings import load_settings
        from serving.runner import run_service

        settings = load_settings()
        if project is not None:
            settings = settings.model_copy(update={"project": project.resolve()})
        served = project_of(settings)  # a bad project file fails here, with its message, before a server starts
        from serving.auth import startup_problem

        problem = startup_problem(settings)
        if problem is not None:  # refused before any banner: the service would exit at once
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(code=1)
        log_uri = served.decision_log_uri(settings)
        console.print(f"serving project [bold]{served.name}[/] ({served.source})")
        host = host or settings.serving.host
        port = port or settings.serving.port
        workers = workers or settings.serving.workers
        console.print(
            f"[bold]nextbest serve[/]: http://{host}:{port}  (Swagger at /, OpenAPI at /v1/openapi.json, "
            f"decision explorer at /explorer, probes /livez /readyz; {workers} worker(s); decision log {log_uri})"
        )
        raise typer.Exit(run_service(settings, host=host, port=port, workers=workers))
