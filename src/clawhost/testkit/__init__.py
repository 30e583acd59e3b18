"""clawhost.testkit: see docs/design.md, "Package map"."""
