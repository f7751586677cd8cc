"""CLI commands: keys (API keys for the decision service: a new key, or the digest to store for one)."""

from __future__ import annotations

import typer

keys_app = typer.Typer(name="keys", help="API keys of the decision service (serving/auth.py).", no_args_is_help=True)


@keys_app.command("hash")
def hash_cmd(key: str = typer.Argument(..., help="The key a channel or an admin will send in X-API-Key.")) -> None:
    """Print the digest to store in serving.api_keys (`sha256:...`), so the settings never hold the key itself."""
    from serving.auth import hash_key

    typer.echo(hash_key(key))


@keys_app.command("new")
def new_cmd(role: str = typer.Option("channel", "--role", help="channel or admin")) -> None:
    """Make a random key: print it once (hand it to the caller) and the settings line that accepts it."""
    import secrets

    from serving.auth import hash_key

    if role not in ("channel", "admin"):
        typer.echo("error: --role is channel or admin", err=True)
        raise typer.Exit(code=2)
    key = secrets.token_urlsafe(32)
    typer.echo(f"key (give it to the caller, it is not stored): {key}")
    typer.echo(f"settings: serving.api_keys: {{'{hash_key(key)}': {role}}}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(keys_app, name="keys")
