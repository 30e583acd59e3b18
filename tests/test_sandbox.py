"""Permissions: what grant_permissions gives, and what the audit hook lets plugin code do.

The audit hook cannot be removed once installed, so every check here runs inside a
``sandbox_scope``; outside one the hook is inert, which the host-code tests pin down.
Network tests use servers on 127.0.0.1 started by the test; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clawhost.core.netrules import NetworkRule, parse_ip
from clawhost.discovery.manifest import Permissions
from clawhost.errors import PermissionDenied, PermissionsRefused
from clawhost.sandbox.audit import audit_hook_installed
from clawhost.sandbox.permissions import (
    EffectivePermissions,
    SandboxScope,
    current_scope,
    enter_scope,
    grant_permissions,
    leave_scope,
    memory_limit_warning,
    sandbox_scope,
)

# Marked here, at collection, so anyio's plugin sees it together with parametrize.
pytestmark = pytest.mark.anyio

# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """data/plugins (granted), data/plugins-evil (a sibling), outside/secret.txt, pkg/."""
    for folder in ("data/plugins", "data/plugins-evil", "outside", "pkg"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "outside" / "secret.txt").write_text("secret")
    (tmp_path / "pkg" / "module.py").write_text("VALUE = 1\n")
    return tmp_path


def scope_for(
    area: Path,
    *,
    network: tuple[str, ...] = (),
    subprocess: bool = False,
    filesystem: tuple[str, ...] | None = None,
) -> SandboxScope:
    granted = (str(area / "data" / "plugins"),) if filesystem is None else filesystem
    permissions = grant_permissions(
        "demo",
        Permissions(filesystem=granted, network=network, subprocess=subprocess),
        fs_allowed=[str(area / "data")],
        net_allowed=["*:*"],
        allow_subprocess=True,
        package_dir=area / "pkg",
    )
    return SandboxScope(permissions)


def denied(kind: str) -> pytest.RaisesExc[PermissionDenied]:
    return pytest.raises(PermissionDenied, check=lambda exc: exc.kind == kind)


@pytest.fixture
def server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections (the backlog does); its port."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


def connect(host: str, port: int, family: int = socket.AF_INET) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect((host, port))


# -- grant_permissions ------------------------------------------------------------------------


def test_grant_gives_what_the_manifest_asks_within_the_host(area: Path) -> None:
    asked = Permissions(
        filesystem=(str(area / "data" / "plugins" / "cache"),),
        network=("api.example.com:443",),
        subprocess=True,
    )
    granted = grant_permissions(
        "weather",
        asked,
        fs_allowed=[str(area / "data")],
        net_allowed=["*.example.com:443"],
        allow_subprocess=True,
        package_dir=area / "pkg",
    )
    assert granted.plugin == "weather"
    assert granted.filesystem == (os.path.realpath(area / "data" / "plugins" / "cache"),)
    assert [str(rule) for rule in granted.network] == ["api.example.com:443"]
    assert granted.subprocess is True
    assert os.path.realpath(area / "pkg") in granted.readable


def test_grant_refuses_listing_every_item_and_why(area: Path) -> None:
    asked = Permissions(
        filesystem=("/etc", str(area / "data" / "ok")),
        network=("api.x.com:443", "api.example.com:80"),
        subprocess=True,
    )
    with pytest.raises(PermissionsRefused) as caught:
        grant_permissions(
            "weather",
            asked,
            fs_allowed=[str(area / "data")],
            net_allowed=["*.example.com:443"],
            allow_subprocess=False,
            package_dir=None,
        )
    assert caught.value.plugin == "weather"
    assert caught.value.refused == (
        "filesystem /etc: outside fs_allowed",
        "network api.x.com:443: not in [plugins.sandbox] net_allowed",
        "network api.example.com:80: not in [plugins.sandbox] net_allowed",
        "subprocess: allow_subprocess is false",
    )


def test_grant_compares_paths_by_whole_components(area: Path) -> None:
    asked = Permissions(filesystem=(str(area / "data" / "plugins-evil"),))
    with pytest.raises(PermissionsRefused) as caught:
        grant_permissions(
            "p",
            asked,
            fs_allowed=[str(area / "data" / "plugins")],
            net_allowed=[],
            allow_subprocess=False,
            package_dir=None,
        )
    assert caught.value.refused[0].endswith("plugins-evil: outside fs_allowed")


def test_grant_resolves_dot_dot_and_symlinks_before_comparing(area: Path) -> None:
    (area / "data" / "plugins" / "link").symlink_to(area / "outside")
    asked = Permissions(
        filesystem=(
            str(area / "data" / "plugins" / ".." / ".." / "outside"),
            str(area / "data" / "plugins" / "link"),
        )
    )
    with pytest.raises(PermissionsRefused) as caught:
        grant_permissions(
            "p",
            asked,
            fs_allowed=[str(area / "data" / "plugins")],
            net_allowed=[],
            allow_subprocess=False,
            package_dir=None,
        )
    climbing, linked = caught.value.refused
    assert climbing.endswith("outside: outside fs_allowed")
    assert linked.endswith(f"link ({os.path.realpath(area / 'outside')}): outside fs_allowed")


def test_grant_refuses_relative_manifest_paths() -> None:
    with pytest.raises(PermissionsRefused) as caught:
        grant_permissions(
            "p",
            Permissions(filesystem=("data",)),
            fs_allowed=["/"],
            net_allowed=[],
            allow_subprocess=False,
            package_dir=None,
        )
    assert caught.value.refused == ("filesystem data: not an absolute path",)
    assert caught.value.command is None  # nothing a config could grant: no command offered
    assert "To grant" not in str(caught.value)


@pytest.mark.parametrize(
    ("host_rule", "asked", "covered"),
    [
        ("*.example.com:443", "api.example.com:443", True),
        ("*.example.com:443", "a.b.example.com:443", True),
        ("*.example.com:443", "*.api.example.com:443", True),
        ("*.example.com:443", "example.com:443", False),
        ("*.example.com:443", "evilexample.com:443", False),
        ("api.example.com:*", "api.example.com:8443", True),
        ("api.example.com:443", "api.example.com:*", False),
        ("*:443", "10.0.0.1:443", True),
        ("*:*", "*:*", True),
        ("127.0.0.1:80", "127.1:80", True),
        ("[::1]:80", "[0:0:0:0:0:0:0:1]:80", True),
        ("api.example.com:443", "*:443", False),
    ],
)
def test_host_rules_cover_asked_rules(host_rule: str, asked: str, covered: bool) -> None:
    assert NetworkRule.parse(host_rule).covers(NetworkRule.parse(asked)) is covered


def test_a_malformed_host_rule_is_the_hosts_error() -> None:
    with pytest.raises(ValueError, match="net_allowed"):
        grant_permissions(
            "p",
            Permissions(),
            fs_allowed=[],
            net_allowed=["api.example.com"],
            allow_subprocess=False,
            package_dir=None,
        )


@pytest.mark.parametrize(
    "spelling",
    ["127.0.0.1", "127.1", "0x7f000001", "2130706433", "0177.0.0.1", "127.000.000.001",
     "0x7f.1", "017700000001", "::ffff:127.0.0.1", "[::ffff:7f00:1]"],
)  # fmt: skip
def test_every_spelling_of_an_address_is_that_address(spelling: str) -> None:
    assert str(parse_ip(spelling)) == "127.0.0.1"


@pytest.mark.parametrize(
    "text", ["127.0.0.1 ", "1.2.3.4.5", "256.1.1.1", "08.1.1.1", "0x", "1.2.65536", "localhost"]
)
def test_what_inet_aton_refuses_is_not_an_address(text: str) -> None:
    assert parse_ip(text) is None


@pytest.mark.parametrize(
    "text", ["0", "1.2.3", "4294967295", "0377.0377.0377.0377", "1.0xffffff", "0x1.2", "00"]
)
def test_address_parsing_agrees_with_the_c_library(text: str) -> None:
    assert str(parse_ip(text)) == socket.inet_ntoa(socket.inet_aton(text))


def test_memory_limit_warning_says_it_is_not_enforced() -> None:
    assert memory_limit_warning(None) is None
    assert memory_limit_warning(0) is None
    message = memory_limit_warning(256)
    assert message is not None
    assert "max_memory_mb = 256 is not enforced" in message


# -- scopes -----------------------------------------------------------------------------------


def test_enter_and_leave_nest(area: Path) -> None:
    first, second = scope_for(area), scope_for(area)
    assert current_scope() is None
    outer = enter_scope(first)
    inner = enter_scope(second)
    assert current_scope() is second
    leave_scope(inner)
    assert current_scope() is first
    leave_scope(outer)
    assert current_scope() is None


def test_creating_a_scope_installs_the_hook(area: Path) -> None:
    scope_for(area)
    assert audit_hook_installed()


def test_host_code_is_unaffected(area: Path) -> None:
    scope_for(area)  # the hook is installed, no scope is entered
    assert (area / "outside" / "secret.txt").read_text() == "secret"
    (area / "outside" / "new.txt").write_text("x")
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_host_services_can_act_as_host_inside_a_scope(area: Path) -> None:
    with sandbox_scope(scope_for(area)), sandbox_scope(None):
        assert (area / "outside" / "secret.txt").read_text() == "secret"


# -- filesystem -------------------------------------------------------------------------------


def test_writing_inside_a_granted_folder_is_allowed(area: Path) -> None:
    target = area / "data" / "plugins" / "sub" / "state.json"
    with sandbox_scope(scope_for(area)):
        target.parent.mkdir()
        target.write_text("{}")
        target.rename(target.with_suffix(".old"))
        assert sorted(os.listdir(target.parent)) == ["state.old"]
        target.with_suffix(".old").unlink()


def test_writing_outside_is_refused_naming_the_plugin_and_path(area: Path) -> None:
    with sandbox_scope(scope_for(area)), denied("filesystem") as caught:
        (area / "outside" / "new.txt").write_text("x")
    assert caught.value.plugin == "demo"
    assert caught.value.resource == os.path.realpath(area / "outside" / "new.txt")
    assert isinstance(caught.value, PermissionError)
    assert not (area / "outside" / "new.txt").exists()


def test_a_sibling_with_the_same_prefix_is_outside(area: Path) -> None:
    with sandbox_scope(scope_for(area)), denied("filesystem"):
        (area / "data" / "plugins-evil" / "x").write_text("x")


def test_dot_dot_cannot_climb_out(area: Path) -> None:
    sneaky = area / "data" / "plugins" / ".." / "plugins-evil" / "x"
    with sandbox_scope(scope_for(area)), denied("filesystem") as caught:
        open(sneaky, "w").close()
    assert caught.value.resource == os.path.realpath(area / "data" / "plugins-evil" / "x")


def test_a_symlink_cannot_lead_out(area: Path) -> None:
    link = area / "data" / "plugins" / "escape"
    link.symlink_to(area / "outside")
    with sandbox_scope(scope_for(area)):
        with denied("filesystem"):
            (link / "secret.txt").read_text()
        with denied("filesystem"):
            (link / "planted.txt").write_text("x")


def test_a_dangling_symlink_cannot_create_a_file_outside(area: Path) -> None:
    link = area / "data" / "plugins" / "dangling"
    link.symlink_to(area / "outside" / "created-through-link")
    with sandbox_scope(scope_for(area)), denied("filesystem"):
        link.write_text("x")
    assert not (area / "outside" / "created-through-link").exists()


def test_removing_a_symlink_acts_on_the_link_not_its_target(area: Path) -> None:
    link = area / "data" / "plugins" / "link"
    link.symlink_to(area / "outside" / "secret.txt")
    with sandbox_scope(scope_for(area)):
        link.unlink()
    assert (area / "outside" / "secret.txt").exists()


def test_a_symlink_re_pointed_later_is_noticed(area: Path) -> None:
    link = area / "data" / "plugins" / "moving"
    (area / "data" / "plugins" / "real").mkdir()
    link.symlink_to(area / "data" / "plugins" / "real")
    scope = scope_for(area)
    with sandbox_scope(scope):
        (link / "a.txt").write_text("x")
    link.unlink()
    link.symlink_to(area / "outside")
    with sandbox_scope(scope), denied("filesystem"):
        (link / "a.txt").write_text("x")


def test_reading_outside_is_refused(area: Path) -> None:
    with sandbox_scope(scope_for(area)):
        with denied("filesystem"):
            (area / "outside" / "secret.txt").read_text()
        with denied("filesystem"):
            os.listdir(area / "outside")


def test_the_plugins_own_package_and_the_standard_library_are_readable(area: Path) -> None:
    with sandbox_scope(scope_for(area)):
        assert (area / "pkg" / "module.py").read_text() == "VALUE = 1\n"
        assert "def " in Path(os.__file__).read_text()
        with denied("filesystem"):
            (area / "pkg" / "written.py").write_text("x")


def test_os_operations_outside_are_refused(area: Path) -> None:
    secret = area / "outside" / "secret.txt"
    inside = area / "data" / "plugins" / "moved.txt"
    with sandbox_scope(scope_for(area)):
        for operation in (
            lambda: os.remove(secret),
            lambda: os.rename(secret, inside),
            lambda: os.mkdir(area / "outside" / "new"),
            lambda: os.chmod(secret, 0o600),
            lambda: os.utime(secret),
            lambda: os.truncate(secret, 0),
            lambda: os.link(secret, inside),
            lambda: os.symlink("/", area / "outside" / "link"),
            lambda: shutil.rmtree(area / "outside"),
        ):
            with denied("filesystem"):
                operation()
    assert secret.read_text() == "secret"


def test_deleting_a_tree_inside_is_allowed(area: Path) -> None:
    tree = area / "data" / "plugins" / "cache"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f.txt").write_text("x")
    (tree / "top.txt").write_text("x")
    with sandbox_scope(scope_for(area)):
        shutil.rmtree(tree)
    assert not tree.exists()


def test_sqlite_databases_follow_the_filesystem_rules(area: Path) -> None:
    with sandbox_scope(scope_for(area)):
        with contextlib.closing(sqlite3.connect(area / "data" / "plugins" / "ok.db")):
            pass
        with denied("filesystem"), contextlib.closing(sqlite3.connect(area / "outside" / "x.db")):
            pass
        with contextlib.closing(sqlite3.connect(":memory:")):
            pass


# -- network ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling", ["127.0.0.1", "127.1", "0x7f000001", "2130706433", "0177.0.0.1", "127.000.000.001"]
)
def test_a_granted_address_is_reachable_in_any_spelling(
    area: Path, server: int, spelling: str
) -> None:
    with sandbox_scope(scope_for(area, network=(f"127.0.0.1:{server}",))):
        connect(spelling, server)


@pytest.mark.parametrize("spelling", ["127.1", "0x7f000001", "2130706433", "0177.0.0.1"])
def test_other_spellings_do_not_sneak_past_a_port_rule(
    area: Path, server: int, spelling: str
) -> None:
    with sandbox_scope(scope_for(area, network=("127.0.0.1:1",))), denied("network") as caught:
        connect(spelling, server)
    assert caught.value.resource == f"127.0.0.1:{server}"


def test_an_ipv4_mapped_ipv6_address_is_the_ipv4_address(area: Path, server: int) -> None:
    scope = scope_for(area, network=(f"127.0.0.1:{server}",))
    try:
        with sandbox_scope(scope):
            connect("::ffff:127.0.0.1", server, socket.AF_INET6)
    except OSError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        pytest.skip(f"no IPv6 here: {exc}")
    with sandbox_scope(scope_for(area, network=("127.0.0.1:1",))), denied("network"):
        connect("::ffff:127.0.0.1", server, socket.AF_INET6)


def test_a_granted_name_resolves_and_its_addresses_connect(area: Path, server: int) -> None:
    with sandbox_scope(scope_for(area, network=(f"localhost:{server}",))):
        socket.create_connection(("localhost", server), timeout=5).close()
        connect("127.0.0.1", server)  # an address "localhost" resolved to


def test_an_address_is_not_granted_by_a_name_that_was_never_resolved(
    area: Path, server: int
) -> None:
    with sandbox_scope(scope_for(area, network=(f"localhost:{server}",))), denied("network"):
        connect("127.0.0.1", server)


def test_looking_up_a_name_that_is_not_granted_is_refused(area: Path) -> None:
    with sandbox_scope(scope_for(area, network=("localhost:80",))), denied("network") as caught:
        socket.getaddrinfo("unreachable.invalid", 443)
    assert caught.value.resource == "unreachable.invalid:443"


def test_wildcard_hosts_and_ports(area: Path, server: int) -> None:
    with sandbox_scope(scope_for(area, network=(f"*:{server}",))):
        connect("127.0.0.1", server)
        socket.create_connection(("localhost", server), timeout=5).close()
    with sandbox_scope(scope_for(area, network=("localhost:*",))):
        socket.create_connection(("localhost", server), timeout=5).close()
    with sandbox_scope(scope_for(area, network=("*.localhost:*",))), denied("network"):
        socket.getaddrinfo("localhost", server)


async def test_asyncio_connections_resolve_through_the_executor(area: Path, server: int) -> None:
    with sandbox_scope(scope_for(area, network=(f"localhost:{server}",))):
        _, writer = await asyncio.open_connection("localhost", server)
        writer.close()
        await writer.wait_closed()
        with denied("network"):
            await asyncio.open_connection("localhost", 1)


def test_datagrams_and_binding_are_checked(area: Path) -> None:
    with sandbox_scope(scope_for(area, network=("127.0.0.1:9",))):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"x", ("127.0.0.1", 9))
            with denied("network"):
                udp.sendto(b"x", ("127.0.0.1", 10))
        with socket.socket() as tcp, denied("network"):
            tcp.bind(("127.0.0.1", 0))


def test_unix_sockets_follow_the_filesystem_rules(area: Path) -> None:
    inside = area / "data" / "plugins" / "s.sock"
    outside = area / "outside" / "s.sock"
    with socket.socket(socket.AF_UNIX) as server_sock:
        server_sock.bind(str(outside))
        server_sock.listen()
        with sandbox_scope(scope_for(area)):
            with socket.socket(socket.AF_UNIX) as client, denied("filesystem"):
                client.connect(str(outside))
            with socket.socket(socket.AF_UNIX) as own:
                own.bind(str(inside))
            with socket.socket(socket.AF_UNIX) as client, denied("network"):
                client.connect("\0abstract")


# -- processes --------------------------------------------------------------------------------


def test_subprocesses_are_refused_without_the_permission(area: Path) -> None:
    with sandbox_scope(scope_for(area)):
        with denied("subprocess") as caught:
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        assert caught.value.resource.startswith(sys.executable)
        with denied("subprocess"):
            os.system("true")
        with denied("subprocess"):
            os.kill(os.getpid(), 0)


def test_subprocesses_are_allowed_with_the_permission(area: Path) -> None:
    with sandbox_scope(scope_for(area, subprocess=True)):
        subprocess.run([sys.executable, "-c", "pass"], check=True)


# -- the scope follows plugin code ------------------------------------------------------------


def test_a_thread_started_by_plugin_code_inherits_the_scope(area: Path) -> None:
    seen: list[object] = []

    def worker() -> None:
        seen.append(current_scope())
        try:
            (area / "outside" / "secret.txt").read_text()
        except PermissionDenied as exc:
            seen.append(exc)

    scope = scope_for(area)
    with sandbox_scope(scope):
        thread = threading.Thread(target=worker)
        thread.start()
    thread.join()
    assert seen[0] is scope
    assert isinstance(seen[1], PermissionDenied)


def test_a_low_level_thread_inherits_the_scope(area: Path) -> None:
    import _thread

    seen: list[object] = []
    done = threading.Event()

    def worker() -> None:
        seen.append(current_scope())
        done.set()

    scope = scope_for(area)
    with sandbox_scope(scope):
        _thread.start_new_thread(worker, ())
    assert done.wait(5)
    assert seen == [scope]


def test_executor_work_runs_in_its_submitters_scope(area: Path) -> None:
    scope = scope_for(area)
    with ThreadPoolExecutor(max_workers=1) as pool:
        with sandbox_scope(scope):  # the pool's only thread starts inside the scope
            assert pool.submit(current_scope).result() is scope
        assert pool.submit(current_scope).result() is None
        assert pool.submit((area / "outside" / "secret.txt").read_text).result() == "secret"


async def test_run_in_executor_carries_the_scope(area: Path) -> None:
    scope = scope_for(area)
    loop = asyncio.get_running_loop()
    with sandbox_scope(scope):
        assert await loop.run_in_executor(None, current_scope) is scope
    assert await loop.run_in_executor(None, current_scope) is None


def test_effective_permissions_answer_questions(area: Path) -> None:
    permissions: EffectivePermissions = scope_for(area, network=("*.example.com:443",)).permissions
    inside = os.path.realpath(area / "data" / "plugins" / "x")
    assert permissions.may_write(inside)
    assert permissions.may_read(inside)
    assert not permissions.may_write(os.path.realpath(area / "pkg" / "module.py"))
    assert permissions.may_read(os.path.realpath(area / "pkg" / "module.py"))
    assert permissions.may_connect("api.example.com", 443)
    assert not permissions.may_connect("api.example.com", 80)
