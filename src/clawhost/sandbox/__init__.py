"""clawhost.sandbox: see docs/design.md, "Package map"."""
