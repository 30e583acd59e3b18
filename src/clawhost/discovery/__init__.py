"""clawhost.discovery: see docs/design.md, "Package map"."""
