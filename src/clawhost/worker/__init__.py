"""clawhost.worker: see docs/design.md, "Package map"."""
