"""``clawhost plugins admin NAME METHOD [--arg k=v]...``: call a plugin's admin command on a
running gateway (``clawhost gateway --http``).

The gateway writes where it listens and its admin token to ``.clawhost/admin.json`` beside
its config file (mode 0600, removed when it stops); this command reads it from the same
place, unless ``--url`` and ``--token`` (or ``CLAWHOST_ADMIN_TOKEN``) say otherwise. The
command is ``NAME.METHOD`` unless METHOD already holds a namespace (``weather.cache.clear``).
Each ``--arg key=value`` is one argument; a value that parses as JSON (``3``, ``true``,
``["a"]``) is that value, anything else a string.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from .state import AppState

__all__ = ["admin_command", "admin_file", "write_admin_file"]

TOKEN_VARIABLE = "CLAWHOST_ADMIN_TOKEN"


def admin_file(state: AppState) -> Path:
    """Where a gateway run with this config says how to reach its admin commands."""
    base = state.config_file.parent if state.config_file is not None else Path.cwd()
    return base / ".clawhost" / "admin.json"


def write_admin_file(path: Path, url: str) -> str:
    """Write ``{"url", "token"}`` to ``path`` (readable by its owner only); the token
    (``CLAWHOST_ADMIN_TOKEN``, else a new random one)."""
    token = os.environ.get(TOKEN_VARIABLE) or secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump({"url": url, "token": token}, out)
    return token


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _arguments(pairs: tuple[str, ...]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.isidentifier():
            raise click.BadParameter(f"{pair!r}: expected key=value", param_hint="--arg")
        arguments[key] = _value(value)
    return arguments


@click.command("admin")
@click.argument("name")
@click.argument("method")
@click.option("--arg", "pairs", multiple=True, metavar="KEY=VALUE", help="An argument.")
@click.option("--url", help="The gateway's URL (default: from .clawhost/admin.json).")
@click.option("--token", help=f"The admin token (default: ${TOKEN_VARIABLE}, or admin.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as JSON.")
@click.pass_obj
def admin_command(
    state: AppState,
    *,
    name: str,
    method: str,
    pairs: tuple[str, ...],
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Call admin command NAME.METHOD of a running gateway (clawhost gateway --http)."""
    arguments = _arguments(pairs)
    known: dict[str, Any] = {}
    path = admin_file(state)
    if url is None or token is None:
        try:
            known = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            if url is None:
                raise click.ClickException(
                    f"no running gateway found ({path} does not exist): start one with "
                    "'clawhost gateway --http PORT', or pass --url"
                ) from None
        except ValueError as exc:
            raise click.ClickException(f"{path}: not JSON ({exc})") from None
    url = (url or str(known.get("url", ""))).rstrip("/")
    token = token or os.environ.get(TOKEN_VARIABLE) or known.get("token")
    if not token:
        raise click.ClickException(f"no admin token: pass --token or set ${TOKEN_VARIABLE}")
    command = method if "." in method else f"{name}.{method}"
    request = urllib.request.Request(
        f"{url}/admin/{command}",
        data=json.dumps(arguments).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            error = json.load(exc).get("error", exc.reason)
        except ValueError:
            error = exc.reason
        raise click.ClickException(f"{command}: {error} (HTTP {exc.code})") from None
    except urllib.error.URLError as exc:
        raise click.ClickException(f"cannot reach the gateway at {url}: {exc.reason}") from None
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    else:
        result = answer.get("result")
        click.echo(result if isinstance(result, str) else json.dumps(result, indent=2))
