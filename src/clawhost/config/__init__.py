"""clawhost.config: see docs/design.md, "Package map"."""
