"""clawhost.runtime: see docs/design.md, "Package map"."""
