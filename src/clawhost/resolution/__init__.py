"""clawhost.resolution: see docs/design.md, "Package map"."""
