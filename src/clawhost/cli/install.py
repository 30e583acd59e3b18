"""``clawhost plugins install SPEC``, ``update [NAME]`` and ``uninstall NAME``.

Install and update fetch or build the plugin into a scratch folder first, read its
manifest from the wheel (never importing it), and check it against the installed plugins
with the host's resolver. A conflict stops them, explained with suggestions, unless
``--force``. Plugin dependencies the wheel asks pip for (``clawdesk-plugin-*``
requirements) that are not installed are fetched and checked too. Only then does pip (or
uv) install exactly the wheels that were checked. The permissions the new plugins ask for
beyond what config.toml grants are shown first and asked about once (``consent``); the
answer is recorded in config.toml after the install.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from clawhost.discovery.discover import SourceKind
from clawhost.discovery.manifest import DISTRIBUTION_PREFIX

from .render import err_console, make_console
from .state import AppState

if TYPE_CHECKING:
    from rich.console import Console

    from clawhost.config.host import HostConfig
    from clawhost.discovery.discover import DiscoveredPlugin

    from .consent import Request
    from .fetch import Fetched
    from .installer import Installer
    from .spec import InstallSource

__all__ = ["install_command", "uninstall_command", "update_command"]

#: How many rounds of missing plugin dependencies are fetched before giving up.
MAX_DEPENDENCY_ROUNDS = 5

_BUILD_ISOLATION_HELP = (
    "Build local projects in this environment instead of an isolated one (pip's option; "
    "needed offline)."
)

installer_option = click.option(
    "--installer",
    "installer_name",
    type=click.Choice(["pip", "uv"]),
    envvar="CLAWHOST_INSTALLER",
    help="Install with pip or uv (default: pip when this environment has it, else uv; "
    "also $CLAWHOST_INSTALLER).",
)


def _installer(state: AppState, name: str | None) -> Installer:
    from .installer import detect_installer

    return detect_installer(echo=state.debug, tool=name)


def _installed(state: AppState) -> tuple[HostConfig, list[DiscoveredPlugin]]:
    from clawhost.discovery.discover import discover_plugins

    config = state.load_config()
    found = discover_plugins(
        group=config.plugins.entry_point_group,
        path=state.search_path,
        dirs=config.plugins.dirs,
        cache=False,
    )
    return config, list(found.plugins)


def _with_dependencies(
    first: list[Fetched],
    installed: list[DiscoveredPlugin],
    config: HostConfig,
    installer: Installer,
    scratch: Path,
    *,
    no_build_isolation: bool,
) -> list[Fetched]:
    """``first``, plus the plugin dependencies pip would install with them that are not
    installed yet, fetched so that they are checked too."""
    from clawhost._version import __version__
    from clawhost.errors import InstallError, MissingDependency

    from .conflicts import find_conflicts
    from .fetch import fetch
    from .spec import parse_spec

    fetched = list(first)
    have = {plugin.name for plugin in installed} | {p.name for f in fetched for p in f.plugins}
    for round_number in range(MAX_DEPENDENCY_ROUNDS):
        new = [plugin for item in fetched for plugin in item.plugins]
        failures = find_conflicts(installed, new, config, host_version=__version__)
        wanted = {
            error.dependency
            for error in failures.values()
            if isinstance(error, MissingDependency) and not error.disabled
        } - have
        requirements = [
            str(requirement)
            for item in fetched
            for requirement in item.requires
            if _plugin_name(requirement.name) in wanted and requirement.marker is None
        ]
        if not requirements:
            return fetched
        for requirement in requirements:
            try:
                extra = fetch(
                    parse_spec(requirement),
                    scratch / f"dependency-{round_number}-{len(fetched)}",
                    installer,
                    no_build_isolation=no_build_isolation,
                )
            except InstallError:
                continue  # left missing: the conflict check reports it
            fetched.append(extra)
            have.update(plugin.name for plugin in extra.plugins)
    return fetched


def _plugin_name(distribution: str) -> str:
    name = distribution.lower().replace("_", "-").replace(".", "-")
    return name[len(DISTRIBUTION_PREFIX) :] if name.startswith(DISTRIBUTION_PREFIX) else name


def _check(
    fetched: list[Fetched],
    installed: list[DiscoveredPlugin],
    config: HostConfig,
    *,
    command: str,
    spec: str,
    force: bool,
) -> None:
    """Stop with the explanation when installing ``fetched`` conflicts (unless ``force``)."""
    from clawhost._version import __version__
    from clawhost.errors import InstallConflict

    from .conflicts import explain, find_conflicts

    new = [plugin for item in fetched for plugin in item.plugins]
    failures = find_conflicts(installed, new, config, host_version=__version__)
    warn = err_console()
    if not failures:
        return
    explanation = "\n\n".join(
        explain(error, command=command, spec=spec) for error in failures.values()
    )
    if not force:
        first = fetched[0]
        raise InstallConflict(first.plugins[0].name, first.version, dict(failures), explanation)
    warn.print(f"Warning: {explanation}", markup=False)
    warn.print("Going ahead despite the conflict (--force).", style="yellow")


def _reinstalling(fetched: Sequence[Fetched], installed: Sequence[DiscoveredPlugin]) -> bool:
    """Whether one of the distributions is installed at the very same version (a rebuilt
    local project), which pip would otherwise call already satisfied."""
    from packaging.utils import canonicalize_name

    have = {
        (canonicalize_name(plugin.source.distribution or ""), str(plugin.version))
        for plugin in installed
        if plugin.source.distribution
    }
    return any(
        (canonicalize_name(item.distribution), str(item.plugins[0].version)) in have
        for item in fetched
    )


def _install(
    state: AppState,
    installer: Installer,
    fetched: list[Fetched],
    installed: list[DiscoveredPlugin],
    *,
    no_deps: bool,
) -> None:
    from clawhost.discovery.cache import invalidate_discovery_cache

    installer.install(
        [argument for item in fetched for argument in item.install_args],
        target=state.paths[0] if state.paths else None,
        reinstall=_reinstalling(fetched, installed),
        no_deps=no_deps,
    )
    invalidate_discovery_cache()


_YES_HELP = (
    "Grant the permissions the plugins ask for without asking (for scripts). Without it, "
    "nothing is granted unless you answer yes at a terminal."
)


def _consent(
    state: AppState,
    console: Console,
    fetched: Sequence[Fetched],
    config: HostConfig,
    *,
    yes: bool,
    update: bool,
    dry_run: bool,
) -> tuple[list[Request], str | None]:
    """Show what the new plugins ask for beyond what config.toml grants, and ask once
    (unless ``--yes``, a dry run, or no terminal); returns the requests and why they are
    not to be granted (``None``: grant them)."""
    from .consent import ask, requests_for, show

    requests = requests_for([plugin for item in fetched for plugin in item.plugins], config)
    if dry_run:
        show(console, requests, update=update)
        return requests, "a dry run grants nothing"
    return requests, ask(console, requests, target=state.config_target(), yes=yes, update=update)


def _settle(
    state: AppState,
    console: Console,
    requests: Sequence[Request],
    config: HostConfig,
    why: str | None,
) -> HostConfig:
    """After installing: record the grants, or say what was not granted and how to."""
    from .consent import record, report_not_granted

    if why is None:
        return record(console, requests, config, state.config_target())
    report_not_granted(err_console(), requests, config, why)
    return config


def _describe(item: Fetched) -> str:
    names = ", ".join(f"{plugin.name} {plugin.version}" for plugin in item.plugins)
    return f"{names} ({item.distribution})"


def _config_hints(fetched: Sequence[Fetched], config: HostConfig) -> list[str]:
    """What to put in config.toml for the options a new plugin requires."""
    import os

    hints = []
    for item in fetched:
        for plugin in item.plugins:
            settings = config.settings_for(plugin.name)
            missing = [
                (key, option)
                for key, option in plugin.manifest.config.items()
                if option.required
                and key not in settings.config
                and not (option.env and os.environ.get(option.env))
            ]
            if not settings.enabled:
                hints.append(f"{plugin.name} is disabled: clawhost plugins enable {plugin.name}")
            if missing:
                lines = [
                    f"Configure {plugin.name} in config.toml:",
                    f"  [plugins.{plugin.name}.config]",
                ]
                for key, option in missing:
                    value = f'"${{{option.env}}}"' if option.env else f"<{option.type}>"
                    lines.append(f"  {key} = {value}")
                hints.append("\n".join(lines))
    return hints


@click.command("install")
@click.argument("spec")
@click.option("--branch", help="The git branch or tag to install (git URLs only).")
@click.option("--force", is_flag=True, help="Install despite a dependency conflict (risky).")
@click.option("--dry-run", is_flag=True, help="Fetch and check only; install nothing.")
@click.option("--no-deps", is_flag=True, help="Do not install the plugin's Python dependencies.")
@click.option("--no-build-isolation", is_flag=True, help=_BUILD_ISOLATION_HELP)
@installer_option
@click.option("--yes", "-y", is_flag=True, help=_YES_HELP)
@click.pass_obj
def install_command(  # noqa: PLR0917 - click passes each option positionally
    state: AppState,
    spec: str,
    branch: str | None,
    force: bool,
    dry_run: bool,
    no_deps: bool,
    no_build_isolation: bool,
    installer_name: str | None,
    yes: bool,
) -> None:
    """Install a plugin: a registry name (weather), a directory, a .tar.gz or .whl file,
    or a git URL (with --branch).

    The plugin is checked against the installed plugins before anything is installed;
    a dependency conflict is refused with an explanation unless --force. The permissions
    it asks for are shown, and granted in config.toml only if you say yes (or --yes).
    """
    from .fetch import fetch
    from .spec import parse_spec

    source = parse_spec(spec, branch=branch)
    installer = _installer(state, installer_name)
    console = make_console()
    config, installed = _installed(state)
    with tempfile.TemporaryDirectory(prefix="clawhost-install-") as folder:
        scratch = Path(folder)
        console.print(f"Fetching {source}", markup=False)
        first = fetch(source, scratch / "plugin", installer, no_build_isolation=no_build_isolation)
        fetched = _with_dependencies(
            [first], installed, config, installer, scratch, no_build_isolation=no_build_isolation
        )
        _check(fetched, installed, config, command="install", spec=spec, force=force)
        for extra in fetched[1:]:
            console.print(f"With its dependency {_describe(extra)}", markup=False)
        requests, why = _consent(
            state, console, fetched, config, yes=yes, update=False, dry_run=dry_run
        )
        if dry_run:
            console.print(f"Would install {_describe(first)}", markup=False)
            return
        _install(state, installer, fetched, installed, no_deps=no_deps)
    console.print(f"Installed {_describe(first)}", markup=False)
    config = _settle(state, console, requests, config, why)
    for hint in _config_hints(fetched, config):
        console.print(hint, markup=False)


def _update_source(plugin: DiscoveredPlugin) -> InstallSource | str:
    """Where an installed plugin's updates come from, or why it is not updated here.

    pip's ``direct_url.json`` tells how a distribution was installed: from a git URL (the
    same URL and branch again), a local folder (the folder again), editable (the source
    tree is the update), or a file (gone, as clawhost installs from a scratch wheel): then,
    as for a registry install, the newest version in the registry.
    """
    from urllib.parse import unquote, urlparse

    from .spec import InstallSource

    distribution = plugin.source.distribution or f"{DISTRIBUTION_PREFIX}{plugin.name}"
    registry = InstallSource("registry", distribution, requirement=distribution)
    try:
        data = json.loads((plugin.source.location / "direct_url.json").read_text("utf-8"))
    except (OSError, ValueError):
        return registry
    url = str(data.get("url", ""))
    if isinstance(data.get("vcs_info"), dict) and data["vcs_info"].get("vcs") == "git":
        revision = data["vcs_info"].get("requested_revision")
        return InstallSource("git", url, url=url, branch=revision)
    directory = data.get("dir_info")
    if isinstance(directory, dict):
        if directory.get("editable"):
            return "an editable install: its source tree is the update"
        path = Path(unquote(urlparse(url).path))
        if url.startswith("file:") and path.is_dir():
            return InstallSource("directory", str(path), path=path)
    return registry


@click.command("update")
@click.argument("name", required=False)
@click.option("--force", is_flag=True, help="Update despite a dependency conflict (risky).")
@click.option("--dry-run", is_flag=True, help="Fetch and check only; install nothing.")
@click.option("--no-build-isolation", is_flag=True, help=_BUILD_ISOLATION_HELP)
@installer_option
@click.option("--yes", "-y", is_flag=True, help=_YES_HELP)
@click.pass_obj
def update_command(  # noqa: PLR0917 - click passes each option positionally
    state: AppState,
    name: str | None,
    force: bool,
    dry_run: bool,
    no_build_isolation: bool,
    installer_name: str | None,
    yes: bool,
) -> None:
    """Update one installed plugin, or every one when NAME is left out.

    Updates are checked against the other plugins like installs. A new version that asks
    for more permissions than the old one was granted needs your consent again (or
    --yes); without it the old grant stays, and the new version will not load.
    """
    from packaging.version import Version

    from clawhost.errors import InstallError, PluginNotFound

    from .fetch import fetch

    installer = _installer(state, installer_name)
    console = make_console()
    config, installed = _installed(state)
    distributed = {
        plugin.name: plugin
        for plugin in sorted(installed, key=lambda p: p.version)
        if plugin.source.kind is SourceKind.DISTRIBUTION
    }
    if name is not None and name not in distributed:
        raise PluginNotFound(name, tuple(sorted(distributed)))
    names = [name] if name is not None else sorted(distributed)
    updates: list[Fetched] = []
    with tempfile.TemporaryDirectory(prefix="clawhost-update-") as folder:
        for index, plugin_name in enumerate(names):
            current = distributed[plugin_name]
            source = _update_source(current)
            if isinstance(source, str):
                console.print(f"{plugin_name} {current.version}: skipped ({source})", markup=False)
                continue
            try:
                item = fetch(
                    source,
                    Path(folder) / str(index),
                    installer,
                    no_build_isolation=no_build_isolation,
                )
            except InstallError as exc:
                if name is not None:
                    raise
                console.print(f"{plugin_name}: cannot fetch an update ({exc})", markup=False)
                continue
            newest = max(Version(str(plugin.version)) for plugin in item.plugins)
            if newest <= Version(str(current.version)):
                console.print(f"{plugin_name} {current.version} is up to date", markup=False)
                continue
            console.print(f"{plugin_name}: {current.version} -> {newest}", markup=False)
            updates.append(item)
        if not updates:
            return
        spec = name or ""
        _check(updates, installed, config, command="update", spec=spec, force=force)
        requests, why = _consent(
            state, console, updates, config, yes=yes, update=True, dry_run=dry_run
        )
        if dry_run:
            return
        _install(state, installer, updates, installed, no_deps=False)
    for item in updates:
        console.print(f"Updated {_describe(item)}", markup=False)
    _settle(state, console, requests, config, why)


@click.command("uninstall")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@installer_option
@click.pass_obj
def uninstall_command(state: AppState, name: str, yes: bool, installer_name: str | None) -> None:
    """Uninstall a plugin's distribution (warning about the plugins that need it)."""
    from clawhost.discovery.cache import invalidate_discovery_cache
    from clawhost.errors import InstallError, PluginNotFound

    if state.paths:
        raise InstallError(
            "pip and uv cannot uninstall from a --path folder; delete the plugin's folders there"
        )
    installer = _installer(state, installer_name)
    config, installed = _installed(state)
    del config
    mine = [plugin for plugin in installed if plugin.name == name]
    if not mine:
        raise PluginNotFound(name, tuple(sorted({plugin.name for plugin in installed})))
    distributions = sorted(
        {
            p.source.distribution
            for p in mine
            if p.source.kind is SourceKind.DISTRIBUTION and p.source.distribution
        }
    )
    if not distributions:
        raise InstallError(
            f"{name} is a directory plugin ({mine[0].source.location}): delete its folder"
        )
    warn = err_console()
    for plugin in sorted(installed, key=lambda p: p.name):
        requirement = plugin.manifest.requirements.get(name)
        if requirement is not None and plugin.name != name:
            warn.print(
                f"Warning: {plugin.name} {plugin.version} requires {name} {requirement} "
                "and will not run without it.",
                style="yellow",
                markup=False,
            )
    others = sorted(
        {p.name for p in installed if p.source.distribution in distributions and p.name != name}
    )
    if others:
        warn.print(
            f"Warning: {', '.join(distributions)} also provides {', '.join(others)}.",
            style="yellow",
            markup=False,
        )
    if not yes:
        click.confirm(f"Uninstall {', '.join(distributions)}?", abort=True, err=True)
    installer.uninstall(distributions)
    invalidate_discovery_cache()
    make_console().print(f"Uninstalled {name} ({', '.join(distributions)})", markup=False)
