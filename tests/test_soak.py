"""A short soak in every test run (``nox -s soak`` runs the long one): concurrent tool
calls and events while plugins are reloaded, disabled, re-enabled, made to fail, added
and removed."""

from __future__ import annotations

from .soak import soak


def test_a_short_soak_loses_no_call_and_leaks_no_registration() -> None:
    report = soak(6.0, seed=1)
    assert report.first_errors == []
    assert report.ok, report
    # The chaos really happened, and the load really ran through it.
    assert report.reloads > 5, report
    assert report.reloads_rolled_back > 0, report
    assert report.disables > 0, report
    assert report.enables > 0, report
    assert report.arrivals > 0, report
    assert report.departures == report.arrivals, report
    assert report.calls_ok > 1000, report
    assert report.calls_failed_expected > 0, report
    assert report.events > 100, report
    assert report.consistency_checks > 10, report
