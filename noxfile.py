"""Every check the project runs, in one place: ``nox`` runs the default set (what CI runs).

nox                 tests, lint, typing, docs
nox -s docs         build the documentation site (mkdocs, warnings are errors)
nox -s demo         install the example plugins and run the demo
nox -s bench        the benchmark suite (writes benchmarks/results/latest.json)
nox -s soak         five minutes of chaos under load (writes tests/results/soak.json)
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typing", "docs", "bench_smoke"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
# What the benchmarks compare clawhost with, installed for the benchmarks only (pluggy is a
# dependency of clawhost already; importlib.metadata is the standard library).
BASELINES = ("stevedore",)
EXAMPLES = sorted(
    path.parent.relative_to(ROOT).as_posix()
    for path in (ROOT / "examples").glob("clawdesk-plugin-*/pyproject.toml")
)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, against clawhost installed as a user would install it."""
    # Tests build real wheels and install them into throw-away environments with pip.
    session.install("pip", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[test]", "mypy")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors, into a throw-away folder."""
    # ruff lets mkdocstrings lay long signatures out one parameter per line.
    session.install(".[docs]", "ruff")
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        f"{session.create_tmp()}/site",
        env={"NO_MKDOCS_2_WARNING": "1"},  # Material's end-of-life banner, on every build
    )


@nox.session
def demo(session: nox.Session) -> None:
    """Install the example plugins as a user would, then run the demo gateway.

    ``nox -s demo -- --watch`` keeps it running with hot reload (edit
    examples/gateway/plugins/greeter/greeter.py and save).
    """
    session.install(".[cli]", "hatchling")
    session.install("--no-build-isolation", "--no-deps", *EXAMPLES)
    session.chdir("examples/gateway")
    session.run("python", "demo.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite; ``-- --quick`` for a smoke run."""
    session.install(".", *BASELINES)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def bench_smoke(session: nox.Session) -> None:
    """The benchmarks at their smallest size: they keep working, no figure is judged."""
    session.install(".", *BASELINES)
    session.run(
        "python", "-m", "benchmarks", "--quick", "--out", f"{session.create_tmp()}/bench.json"
    )


@nox.session
def soak(session: nox.Session) -> None:
    """The long soak: calls and events while plugins are reloaded, disabled, re-enabled and
    made to fail (``-- --seconds 60`` for a shorter one). Fails on any unexpected failure
    or leaked registration."""
    session.install(".")
    session.run(
        "python",
        "-m",
        "tests.soak",
        "--seconds",
        "300",
        "--json",
        "tests/results/soak.json",
        *session.posargs,
    )
