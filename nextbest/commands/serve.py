"""CLI commands: serve (the BentoML decision service)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""

    @app.command("serve")
    def serve(
        port: int = typer.Option(None, "--port", "-p", help="HTTP port (default: settings.serving.port, 3000)."),
        host: str = typer.Option(None, "--host", help="Bind address (default: settings.serving.host)."),
        workers: int = typer.Option(None, "--workers", "-w", min=1, help="Worker processes (default: settings)."),
        project: Path = typer.Option(
            None,
            "--project",
            help="Serve an onboarded project: its onboarding YAML with a `serving:` section (docs/onboarding.md).",
        ),
    ) -> None:
        """Run the decision service (`bentoml serve serving.service:NextbestService`) until Ctrl-C.

        Needs champion models (`nextbest train churn|nba`) and a materialized online store
        (`nextbest features materialize`); until both exist /readyz answers 503 and loading retries.
        With `--project`, the same endpoints serve that onboarded project (`nextbest onboard all` first).
        """
        from nextbest.console import console
        from nextbest.errors import ConfigError
        from nextbest.onboarding.config import load_config
        from nextbest.settings import load_settings
        from serving.runner import run_service

        settings = load_settings()
        log_uri = settings.decision_log_uri
        if project is not None:
            cfg = load_config(project)  # a bad config fails here, with its message, before a server starts
            if cfg.serving is None:
                raise ConfigError(f"{project} has no `serving:` section; see docs/onboarding.md (Serving your project)")
            serving = settings.serving.model_copy(update={"project_config": project.resolve()})
            settings = settings.model_copy(update={"serving": serving})
            console.print(f"serving onboarded project [bold]{cfg.project}[/] ({project})")
            from serving.project_engine import ProjectEngine

            log_uri = ProjectEngine(settings, config=cfg).decision_log_uri
        host = host or settings.serving.host
        port = port or settings.serving.port
        workers = workers or settings.serving.workers
        console.print(
            f"[bold]nextbest serve[/]: http://{host}:{port}  (Swagger at /, OpenAPI at /docs.json, "
            f"probes /livez /readyz; {workers} worker(s); decision log {log_uri})"
        )
        raise typer.Exit(run_service(settings, host=host, port=port, workers=workers))
