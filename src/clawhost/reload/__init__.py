"""clawhost.reload: see docs/design.md, "Package map"."""
