"""Installed fake plugin distributions (real dist-info on disk) plus unrelated noise."""

from __future__ import annotations

import os
import time
from pathlib import Path

NOISE = 200

MANIFEST = """\
[plugin]
name = "{name}"
version = "{version}"
description = "Benchmark plugin {index}"
author = "Bench <bench@example.com>"
license = "MIT"
min_clawdesk_version = "0.1.0"

[plugin.capabilities]
tools = ["{name}_lookup", "{name}_update"]

[plugin.dependencies]
{dependencies}
[plugin.permissions]
network = ["api.example.com:443"]
subprocess = false

[plugin.config.api_key]
type = "string"
env = "BENCH_KEY_{index}"
description = "API key"

[plugin.config.ttl]
type = "integer"
default = 60
description = "Cache lifetime"
"""

CODE = """\
from clawhost import hookimpl, tool


@tool
def {name}_lookup(key: str) -> str:
    \"\"\"Look a key up.\"\"\"
    return key


@tool
def {name}_update(key: str, value: int = 0) -> int:
    \"\"\"Update a key.\"\"\"
    return value


class Plugin:
    \"\"\"The entry point's object: clawhost and stevedore both instantiate it.\"\"\"

    @hookimpl
    def activate(self, ctx):
        ctx.register_tool({name}_lookup)
        ctx.register_tool({name}_update)
"""


def plugin_name(index: int) -> str:
    return f"bench{index:05d}"


def build_site(root: Path, plugins: int, *, noise: int = NOISE, dependencies: bool = False) -> Path:
    """Write ``plugins`` plugin distributions and ``noise`` unrelated ones into ``root``.

    With ``dependencies``, plugin i depends on plugin i // 2 (a tree), so resolution has
    real edges to follow. Everything is aged an hour so the discovery cache may trust it.
    """
    root.mkdir(parents=True, exist_ok=True)
    for index in range(noise):
        dist_info = root / f"noise_package_{index:05d}-1.0.{index % 7}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: noise-package-{index:05d}\nVersion: 1.0.{index % 7}\n\n"
        )
        (dist_info / "RECORD").write_text("")
        if index % 3 == 0:
            (dist_info / "entry_points.txt").write_text(
                f"[console_scripts]\nnoise{index} = noise_{index}:main\n"
            )
    for index in range(plugins):
        name = plugin_name(index)
        module = f"clawdesk_plugin_{name}"
        dist_info = root / f"clawdesk_plugin_{name}-1.0.0.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: clawdesk-plugin-{name}\nVersion: 1.0.0\n\n"
        )
        (dist_info / "RECORD").write_text("")
        (dist_info / "entry_points.txt").write_text(
            f"[clawdesk.plugins]\n{name} = {module}:Plugin\n"
        )
        package = root / module
        package.mkdir()
        requirement = f'{plugin_name(index // 2)} = ">=1.0"\n' if dependencies and index else ""
        (package / "plugin.toml").write_text(
            MANIFEST.format(name=name, version="1.0.0", index=index, dependencies=requirement)
        )
        (package / "__init__.py").write_text(CODE.format(name=name))
    stamp = time.time() - 3600
    for folder, dirs, files in os.walk(root):
        for entry in dirs + files:
            os.utime(os.path.join(folder, entry), (stamp, stamp))
    os.utime(root, (stamp, stamp))
    return root
