"""clawhost.surfaces: see docs/design.md, "Package map"."""
