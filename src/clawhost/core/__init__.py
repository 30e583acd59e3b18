"""clawhost.core: see docs/design.md, "Package map"."""
