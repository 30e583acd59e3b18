"""``clawhost plugins create NAME``: a plugin project whose own tests pass as generated.

::

    my-plugin/
    ├── pyproject.toml                      the clawdesk.plugins entry point
    ├── README.md
    ├── src/clawdesk_plugin_my_plugin/
    │   ├── __init__.py                     a tool and the lifecycle hooks
    │   └── plugin.toml                     the manifest
    └── tests/test_plugin.py                clawhost's pytest fixtures and conformance check
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

import click

from clawhost._version import __version__
from clawhost.discovery.manifest import DISTRIBUTION_PREFIX, PLUGIN_NAME_PATTERN

from .render import make_console
from .state import AppState

__all__ = ["Scaffold", "create_command", "scaffold"]


@dataclass(frozen=True, slots=True)
class Scaffold:
    """The names one plugin project is generated with."""

    name: str  #: the plugin: ``my-plugin``
    description: str
    author: str

    @property
    def distribution(self) -> str:
        """``clawdesk-plugin-my-plugin``."""
        return f"{DISTRIBUTION_PREFIX}{self.name}"

    @property
    def package(self) -> str:
        """``clawdesk_plugin_my_plugin``."""
        return self.distribution.replace("-", "_")

    @property
    def identifier(self) -> str:
        """``my_plugin``."""
        return self.name.replace("-", "_")

    @property
    def class_name(self) -> str:
        """``MyPlugin`` (``Plugin`` appended unless the name ends with it)."""
        camel = "".join(part.capitalize() for part in re.split(r"[-_]", self.name))
        return camel if camel.endswith("Plugin") else f"{camel}Plugin"

    @property
    def tool(self) -> str:
        """The example tool's name, prefixed so it clashes with no other plugin's."""
        return f"{self.identifier}_hello"

    @property
    def min_version(self) -> str:
        """This clawhost's ``major.minor.0``: the manifest's ``min_clawdesk_version``."""
        from packaging.version import Version

        release = Version(__version__).release
        return f"{release[0]}.{release[1] if len(release) > 1 else 0}.0"

    @property
    def authors_toml(self) -> str:
        """``authors`` of pyproject.toml: ``Jane <j@example.com>`` gives a name and an email."""
        match = re.fullmatch(r"\s*(.*?)\s*<([^<>\s]+@[^<>\s]+)>\s*", self.author)
        if match is None:
            return f'{{ name = "{self.author}" }}'
        return f'{{ name = "{match.group(1)}", email = "{match.group(2)}" }}'

    def substitutions(self) -> dict[str, str]:
        """The values the templates are filled with."""
        return {
            "name": self.name,
            "description": self.description,
            "author": self.author,
            "authors": self.authors_toml,
            "distribution": self.distribution,
            "package": self.package,
            "class_name": self.class_name,
            "tool": self.tool,
            "min_version": self.min_version,
            "clawhost_version": self.min_version,
        }


def scaffold(destination: Path, project: Scaffold) -> list[Path]:
    """Write the project into ``destination`` (which must not hold anything yet)."""
    values = project.substitutions()
    files = {
        Path("pyproject.toml"): _PYPROJECT,
        Path("README.md"): _README,
        Path("src", project.package, "__init__.py"): _INIT,
        Path("src", project.package, "plugin.toml"): _MANIFEST,
        Path("tests", "test_plugin.py"): _TESTS,
    }
    written = []
    for relative, template in files.items():
        path = destination / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(string.Template(template).substitute(values), "utf-8")
        written.append(path)
    return written


@click.command("create")
@click.argument("name")
@click.option(
    "--directory",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to create the project (default: ./NAME).",
)
@click.option("--description", default=None, help="One line saying what the plugin does.")
@click.option("--author", default="Your Name <you@example.com>", show_default=True)
@click.pass_obj
def create_command(
    state: AppState, name: str, directory: Path | None, description: str | None, author: str
) -> None:
    """Create a plugin project NAME: manifest, code, tests (which pass as generated)."""
    del state
    from clawhost.errors import InvalidPluginSpec

    if re.fullmatch(PLUGIN_NAME_PATTERN, name) is None or len(name) > 64:
        raise InvalidPluginSpec(
            name,
            "a plugin name is lower-case letters, digits, '-' or '_', starting with a letter",
        )
    for label, text in (("--description", description or ""), ("--author", author)):
        # They go into TOML strings and a docstring as they are.
        if any(character in text for character in '"\\$') or not text.isprintable():
            raise click.BadParameter(
                "no quotes, backslashes, '$' or control characters", param_hint=label
            )
    destination = (directory or Path(name)).absolute()
    if destination.exists() and any(destination.iterdir()):
        raise click.ClickException(f"{destination} already exists and is not empty")
    project = Scaffold(name, description or f"The {name} plugin for ClawDesk", author)
    written = scaffold(destination, project)
    console = make_console()
    console.print(f"Created {project.distribution} in {destination}", markup=False)
    for path in written:
        console.print(f"  {path.relative_to(destination)}", markup=False)
    console.print(
        "\nNext:\n"
        f"  cd {destination}\n"
        "  python -m pytest                     # its own tests\n"
        "  clawhost plugins test .              # the test harness\n"
        "  clawhost plugins install .           # install it",
        markup=False,
    )


_PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "${distribution}"
version = "0.1.0"
description = "${description}"
readme = "README.md"
requires-python = ">=3.11"
authors = [${authors}]
dependencies = ["clawhost>=${clawhost_version}"]

[project.optional-dependencies]
test = ["pytest>=8"]

# How hosts find the plugin: the entry point names the plugin object.
[project.entry-points."clawdesk.plugins"]
${name} = "${package}:${class_name}"

[tool.hatch.build.targets.wheel]
packages = ["src/${package}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
# The tests run against the source tree, installed or not.
pythonpath = ["src"]
"""

_README = """\
# ${distribution}

${description}

It offers the tool `${tool}(name)`.

## Configuration

```toml
[plugins.${name}.config]
greeting = "Hello"
```

## Development

```console
python -m pytest                  # the plugin's own tests (clawhost's pytest fixtures)
clawhost plugins test .           # the harness: builds, installs and checks it end to end
clawhost plugins install .        # install it next to your other plugins
```
"""

_MANIFEST = """\
# The manifest: hosts read it without importing the plugin.
[plugin]
name = "${name}"
version = "0.1.0"
description = "${description}"
author = "${author}"
min_clawdesk_version = "${min_version}"

[plugin.capabilities]
# Everything the plugin registers must be listed here.
tools = ["${tool}"]
channels = []
pipeline_stages = []
providers = []

[plugin.dependencies]
# other-plugin = "^1.0"

[plugin.permissions]
network = []
filesystem = []
subprocess = false

[plugin.config.greeting]
type = "string"
default = "Hello"
description = "How the ${tool} tool greets"
"""

_INIT = '''\
"""${description}."""

from __future__ import annotations

from clawhost import PluginContext, hookimpl, tool

__all__ = ["${class_name}"]


class ${class_name}:
    """Registers the ``${tool}`` tool."""

    def __init__(self) -> None:
        self.greeting = "Hello"

    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        """Read the configuration and register what the manifest declares."""
        self.greeting = ctx.config["greeting"]
        ctx.register_tool(self.hello)

    @hookimpl
    def deactivate(self, ctx: PluginContext) -> None:
        """Release what activate acquired; the host removes the registrations itself."""
        self.greeting = "Hello"

    @hookimpl
    def health_check(self, ctx: PluginContext) -> bool:
        """Report whether the plugin can do its work (check clients, credentials...)."""
        return True

    @tool(name="${tool}")
    async def hello(self, name: str = "world") -> str:
        """Greet someone by name."""
        return f"{self.greeting}, {name}!"
'''

_TESTS = '''\
"""Tests for the ${name} plugin, with clawhost's pytest fixtures (no configuration needed).

``clawhost_host`` builds and starts a throw-away host, ``hook_recorder`` records every call
into the plugin, ``clawhost_context`` is a bare HostContext, and ``clawhost_check`` walks
the plugin through activate, registrations, health check and deactivate.
"""

from __future__ import annotations

from pathlib import Path

from ${package} import ${class_name}

PROJECT = Path(__file__).resolve().parents[1]


async def test_the_tool_greets_with_the_configured_greeting(clawhost_host) -> None:
    host = await clawhost_host(PROJECT, config={"${name}": {"greeting": "Hi"}})

    assert await host.tools.invoke("${tool}", {"name": "Ada"}) == "Hi, Ada!"


async def test_the_hooks_run_in_order_and_deactivation_leaves_nothing(
    clawhost_host, hook_recorder
) -> None:
    host = await clawhost_host(PROJECT)

    await host.deactivate("${name}")

    hook_recorder.assert_order("${name}", "import", "activate", "deactivate")
    assert host.context.registrations("${name}").is_empty()


async def test_activate_registers_into_a_context(clawhost_context) -> None:
    plugin = ${class_name}()
    ctx = clawhost_context.plugin_context("${name}", config={"greeting": "Hey"})

    plugin.activate(ctx)

    assert clawhost_context.tools.has("${tool}")
    assert await clawhost_context.tools.invoke("${tool}", {"name": "Bo"}) == "Hey, Bo!"


async def test_the_plugin_conforms(clawhost_check) -> None:
    report = await clawhost_check(PROJECT)

    assert report.ok, report
'''
