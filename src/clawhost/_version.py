"""The clawhost version, read by the build backend and by the host's compatibility check."""

__version__ = "0.5.0"
