"""clawhost.host: see docs/design.md, "Package map"."""
