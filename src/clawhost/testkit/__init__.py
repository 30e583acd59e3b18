"""Testing plugins: ``make_test_host``, the call recorder, the conformance suite.

Layer rules and the package map: docs/design.md, "Package map".
"""
