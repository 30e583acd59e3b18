"""``clawhost plugins install / update / uninstall``: real installs into throw-away
environments, offline, and every way a SPEC or an archive could be turned against us."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from clawhost.cli.archives import check_tar, check_zip, extract_archive
from clawhost.cli.spec import parse_spec
from clawhost.cli.wheels import read_wheel
from clawhost.errors import InvalidPluginSpec, UnsafeArchive

from ._cli import (
    GEOCODING,
    WEATHER,
    build_wheel,
    invoke,
    offline_env,
    pip_install,
    plugin_free_venv,
    plugin_project,
    run_cli,
)

# -- SPECs are checked before anything runs -------------------------------------------------

INJECTIONS = [
    "-r/etc/passwd",
    "--index-url=http://evil",
    "--extra-index-url http://evil weather",
    "weather; rm -rf /",
    "weather ; python_version > '3'",
    "weather @ https://evil.example/weather.whl",
    "ext::sh -c touch% /tmp/pwned",
    "git+ext::sh -c id",
    "weather\n--index-url=http://evil",
    " weather",
    "",
]


@pytest.mark.parametrize("spec", INJECTIONS)
def test_a_spec_that_could_become_an_option_or_a_command_is_refused(spec: str) -> None:
    with pytest.raises(InvalidPluginSpec) as caught:
        parse_spec(spec)

    assert caught.value.spec == spec


@pytest.mark.parametrize("spec", INJECTIONS[:4])
def test_the_command_refuses_them_before_running_anything(
    spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(subprocess, "run", no_subprocess)

    result = invoke("plugins", "install", "--", spec)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot install {spec!r}: ")
    assert "Traceback" not in result.output


def test_an_option_given_as_spec_is_a_usage_error() -> None:
    result = invoke("plugins", "install", "--index-url=http://evil")

    assert result.exit_code == 2
    assert "No such option '--index-url'" in result.stderr


def test_a_branch_that_looks_like_an_option_is_refused() -> None:
    with pytest.raises(InvalidPluginSpec, match="is not a branch"):
        parse_spec("https://example.com/plugin.git", branch="--upload-pack=touch /tmp/x")


def test_a_git_url_may_only_use_real_transports() -> None:
    with pytest.raises(InvalidPluginSpec, match="not ext://"):
        parse_spec("ext://sh -c id")


@pytest.mark.parametrize(
    ("spec", "requirement"),
    [
        ("weather", "clawdesk-plugin-weather"),
        ("weather>=1.2,<2", "clawdesk-plugin-weather<2,>=1.2"),
        ("clawdesk-plugin-weather==1.2.0", "clawdesk-plugin-weather==1.2.0"),
        ("Rag_Enhanced", "clawdesk-plugin-rag-enhanced"),
    ],
)
def test_a_registry_name_means_its_clawdesk_plugin_distribution(
    spec: str, requirement: str
) -> None:
    source = parse_spec(spec)

    assert (source.kind, source.requirement) == ("registry", requirement)


def test_a_name_is_a_name_even_beside_a_folder_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "weather").mkdir()
    monkeypatch.chdir(tmp_path)

    assert parse_spec("weather").kind == "registry"
    assert parse_spec("./weather").kind == "directory"


def test_branch_only_goes_with_git_urls() -> None:
    with pytest.raises(InvalidPluginSpec, match="--branch applies to git URLs only"):
        parse_spec("weather", branch="main")


# -- archives -------------------------------------------------------------------------------


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_member("pkg-1.0/../../evil.py"), "'..' component"),
        (_member("/etc/cron.d/evil"), "absolute path"),
        (_member("pkg-1.0/link", tarfile.SYMTYPE, "../../../etc/passwd"), "pointing outside"),
        (_member("pkg-1.0/abs", tarfile.SYMTYPE, "/etc/passwd"), "absolute path"),
        (_member("pkg-1.0/hard", tarfile.LNKTYPE, "../outside"), "pointing outside"),
        (_member("pkg-1.0/dev", tarfile.CHRTYPE), "device"),
    ],
)
def test_a_tar_member_that_escapes_is_refused(
    tmp_path: Path, member: tarfile.TarInfo, reason: str
) -> None:
    archive = _tar(
        tmp_path / "pkg-1.0.tar.gz", [(_member("pkg-1.0/ok.py"), b"x = 1\n"), (member, b"")]
    )

    with pytest.raises(UnsafeArchive, match=reason) as caught:
        check_tar(archive)

    assert caught.value.member == member.name


def test_a_symlink_inside_the_archive_is_fine(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "pkg-1.0.tar.gz",
        [
            (_member("pkg-1.0/a.py"), b"x = 1\n"),
            (_member("pkg-1.0/b.py", tarfile.SYMTYPE, "a.py"), b""),
        ],
    )

    folder = extract_archive(archive, tmp_path / "out")

    assert folder == tmp_path / "out" / "pkg-1.0"
    assert (folder / "b.py").read_text() == "x = 1\n"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.py", "'..' component"),
        ("/abs/evil.py", "absolute path"),
        ("a\\..\\b", "backslash"),
    ],
)
def test_a_zip_member_that_escapes_is_refused(tmp_path: Path, name: str, reason: str) -> None:
    path = tmp_path / "plugin-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, "x")

    with pytest.raises(UnsafeArchive, match=reason):
        check_zip(path)


def test_a_wheel_holding_a_symlink_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plugin-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("plugin/link")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "/etc/passwd")

    with pytest.raises(UnsafeArchive, match="symbolic link"):
        check_zip(path)


def test_installing_a_malicious_archive_writes_nothing(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "evil-1.0.tar.gz",
        [(_member("evil-1.0/setup.py"), b""), (_member("evil-1.0/../../pwned.txt"), b"x")],
    )

    result = invoke("plugins", "install", archive)

    assert result.exit_code == 1
    assert "member 'evil-1.0/../../pwned.txt' has a '..' component" in result.stderr
    assert not (tmp_path.parent / "pwned.txt").exists()


# -- wheels ---------------------------------------------------------------------------------


def test_a_wheel_is_read_without_installing_it(wheelhouse: Path) -> None:
    from .conftest import example_wheel

    info = read_wheel(example_wheel(wheelhouse, "clawdesk-plugin-weather"))

    assert (info.distribution, info.version) == ("clawdesk-plugin-weather", "1.2.0")
    (plugin,) = info.plugins
    assert (plugin.name, str(plugin.version)) == ("weather", "1.2.0")
    assert plugin.manifest.requirements == {"geocoding": "^1.5.0"}
    assert "clawdesk-plugin-geocoding>=1.5" in [str(r) for r in info.requires]


def test_a_wheel_without_an_entry_point_is_not_a_plugin(tmp_path: Path) -> None:
    path = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("other-1.0.dist-info/METADATA", "Name: other\nVersion: 1.0\n\n")
        archive.writestr("other/__init__.py", "")

    result = invoke("plugins", "install", path)

    assert result.exit_code == 1
    assert result.stderr.strip().endswith(
        "other is not a clawhost plugin: it has no 'clawdesk.plugins' entry point"
    )


# -- real installs in throw-away environments ----------------------------------------------


@pytest.fixture
def python(tmp_path: Path) -> Path:
    """An environment with clawhost and no plugin installed."""
    return plugin_free_venv(tmp_path / "venv")


@pytest.fixture
def env(wheelhouse: Path) -> dict[str, str]:
    """Offline, with the example wheels as the 'registry'."""
    return offline_env(wheelhouse)


def _installed(python: Path, env: dict[str, str]) -> dict[str, str]:
    listed = run_cli(python, "plugins", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    return {row["name"]: row["version"] for row in json.loads(listed.stdout)}


@pytest.mark.slow
def test_install_from_a_directory_also_installs_its_plugin_dependency(
    python: Path, env: dict[str, str]
) -> None:
    done = run_cli(python, "plugins", "install", "--no-build-isolation", WEATHER, env=env)

    assert done.returncode == 0, done.stderr
    assert "With its dependency geocoding 1.5.2 (clawdesk-plugin-geocoding)" in done.stdout
    assert "Installed weather 1.2.0 (clawdesk-plugin-weather)" in done.stdout
    assert 'api_key = "${WEATHER_API_KEY}"' in done.stdout  # what to configure next
    assert _installed(python, env) == {"geocoding": "1.5.2", "weather": "1.2.0"}


@pytest.mark.slow
def test_install_from_a_source_archive(python: Path, env: dict[str, str], tmp_path: Path) -> None:
    shutil.copytree(GEOCODING, tmp_path / "geocoding", ignore=shutil.ignore_patterns("tests"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--no-isolation",
            "--outdir",
            tmp_path / "dist",
            tmp_path / "geocoding",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")

    done = run_cli(python, "plugins", "install", "--no-build-isolation", sdist, env=env)

    assert done.returncode == 0, done.stderr
    assert _installed(python, env) == {"geocoding": "1.5.2"}


@pytest.mark.slow
def test_install_from_a_git_branch(python: Path, env: dict[str, str], tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(GEOCODING, repository, ignore=shutil.ignore_patterns("tests"))

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repository,
            check=True,
            capture_output=True,
        )

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "1.5.2")
    git("checkout", "-qb", "v1.7")
    for file in ("pyproject.toml", "src/clawdesk_plugin_geocoding/plugin.toml"):
        path = repository / file
        path.write_text(path.read_text().replace("1.5.2", "1.7.0"))
    git("commit", "-qam", "1.7.0")
    git("checkout", "-q", "main")

    done = run_cli(
        python,
        "plugins",
        "install",
        "--no-build-isolation",
        repository.as_uri(),
        "--branch",
        "v1.7",
        env=env,
    )

    assert done.returncode == 0, done.stderr
    assert f"Fetching {repository.as_uri()} (branch v1.7)" in done.stdout
    assert _installed(python, env) == {"geocoding": "1.7.0"}


@pytest.mark.slow
def test_a_dry_run_checks_a_wheel_and_installs_nothing(
    python: Path, env: dict[str, str], wheelhouse: Path
) -> None:
    from .conftest import example_wheel

    wheel = example_wheel(wheelhouse, "clawdesk-plugin-weather")

    done = run_cli(python, "plugins", "install", "--dry-run", wheel, env=env)

    assert done.returncode == 0, done.stderr
    assert "Would install weather 1.2.0 (clawdesk-plugin-weather)" in done.stdout
    assert _installed(python, env) == {}


@pytest.fixture
def with_examples(python: Path, env: dict[str, str], wheelhouse: Path) -> Path:
    """The environment with weather 1.2.0 and geocoding 1.5.2 installed."""
    from .conftest import example_wheel

    wheels = [example_wheel(wheelhouse, f"clawdesk-plugin-{n}") for n in ("weather", "geocoding")]
    pip_install(python, *wheels, env=env)
    return python


@pytest.fixture
def new_plugin(tmp_path: Path) -> Path:
    """A plugin requiring geocoding >=2.0.0, while weather requires ^1.5.0."""
    return plugin_project(tmp_path, "new-plugin", requires={"geocoding": ">=2.0.0"})


@pytest.mark.slow
def test_a_conflicting_install_is_refused_with_the_explanation(
    with_examples: Path, env: dict[str, str], new_plugin: Path
) -> None:
    done = run_cli(with_examples, "plugins", "install", "--no-build-isolation", new_plugin, env=env)

    assert done.returncode == 1
    assert done.stderr.startswith("Error: Dependency conflict detected\n")
    for line in (
        "  new-plugin v1.0.0 requires geocoding >=2.0.0",
        "  weather v1.2.0 requires geocoding ^1.5.0",
        "These version requirements are incompatible.",
        "Suggestions:",
        f"Use 'clawhost plugins install {new_plugin} --force' to override (risky)",
    ):
        assert line in done.stderr
    assert "new-plugin" not in _installed(with_examples, env)


@pytest.mark.slow
def test_force_installs_despite_the_conflict(
    with_examples: Path, env: dict[str, str], new_plugin: Path
) -> None:
    done = run_cli(
        with_examples, "plugins", "install", "--no-build-isolation", "--force", new_plugin, env=env
    )

    assert done.returncode == 0, done.stderr
    assert "Going ahead despite the conflict (--force)." in done.stderr
    assert _installed(with_examples, env)["new-plugin"] == "1.0.0"


@pytest.mark.slow
def test_update_installs_the_newer_version_from_the_registry(
    with_examples: Path, env: dict[str, str], tmp_path: Path, wheelhouse: Path
) -> None:
    newer = tmp_path / "geocoding-1.6.0"
    shutil.copytree(GEOCODING, newer, ignore=shutil.ignore_patterns("tests"))
    for file in ("pyproject.toml", "src/clawdesk_plugin_geocoding/plugin.toml"):
        path = newer / file
        path.write_text(path.read_text().replace("1.5.2", "1.6.0"))
    build_wheel(newer, tmp_path / "registry")

    done = run_cli(
        with_examples,
        "plugins",
        "update",
        "geocoding",
        env=offline_env(wheelhouse, tmp_path / "registry"),
    )

    assert done.returncode == 0, done.stderr
    assert "geocoding: 1.5.2 -> 1.6.0" in done.stdout
    assert _installed(with_examples, env) == {"geocoding": "1.6.0", "weather": "1.2.0"}


@pytest.mark.slow
def test_update_says_when_everything_is_up_to_date(
    with_examples: Path, env: dict[str, str]
) -> None:
    done = run_cli(with_examples, "plugins", "update", env=env)

    assert done.returncode == 0, done.stderr
    assert "geocoding 1.5.2 is up to date" in done.stdout
    assert "weather 1.2.0 is up to date" in done.stdout


@pytest.mark.slow
def test_uninstall_warns_about_dependents_and_asks_first(
    with_examples: Path, env: dict[str, str]
) -> None:
    declined = run_cli(with_examples, "plugins", "uninstall", "geocoding", env=env, input="n\n")
    confirmed = run_cli(with_examples, "plugins", "uninstall", "geocoding", env=env, input="y\n")

    assert declined.returncode == 1
    assert "Warning: weather 1.2.0 requires geocoding ^1.5.0 and will not run without it." in (
        declined.stderr
    )
    assert "Uninstall clawdesk-plugin-geocoding? [y/N]" in declined.stderr
    assert confirmed.returncode == 0, confirmed.stderr
    assert "Uninstalled geocoding (clawdesk-plugin-geocoding)" in confirmed.stdout
    assert _installed(with_examples, env) == {"weather": "1.2.0"}


@pytest.mark.slow
def test_uninstall_yes_does_not_ask(with_examples: Path, env: dict[str, str]) -> None:
    done = run_cli(with_examples, "plugins", "uninstall", "--yes", "weather", env=env)

    assert done.returncode == 0, done.stderr
    assert "[y/N]" not in done.stderr
    assert _installed(with_examples, env) == {"geocoding": "1.5.2"}
