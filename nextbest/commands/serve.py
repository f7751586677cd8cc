"""CLI commands: serve (the BentoML decision service)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""

    @app.command("serve")
    def serve(
        port: int = typer.Option(None, "--port", "-p", help="HTTP port (default: settings.serving.port, 3000)."),
        host: str = typer.Option(None, "--host", help="Bind address (default: settings.serving.host)."),
        workers: int = typer.Option(None, "--workers", "-w", min=1, help="Worker processes (default: settings)."),
    ) -> None:
        """Run the decision service (`bentoml serve serving.service:NextbestService`) until Ctrl-C.

        Needs champion models (`nextbest train churn|nba`) and a materialized online store
        (`nextbest features materialize`); until both exist /readyz answers 503 and loading retries.
        """
        from nextbest.console import console
        from nextbest.settings import load_settings
        from serving.runner import run_service

        settings = load_settings()
        host = host or settings.serving.host
        port = port or settings.serving.port
        workers = workers or settings.serving.workers
        console.print(
            f"[bold]nextbest serve[/]: http://{host}:{port}  (Swagger at /, OpenAPI at /docs.json, "
            f"probes /livez /readyz; {workers} worker(s); decision log {settings.decision_log_uri})"
        )
        raise typer.Exit(run_service(settings, host=host, port=port, workers=workers))
