"""Moved to ``clawhost.core.netrules`` (config validation parses rules below the sandbox).

Kept so that ``from clawhost.sandbox.netrules import ...`` in older code still works.
"""

from __future__ import annotations

from clawhost.core.netrules import IPAddress, NetworkRule, canonical_name, parse_host, parse_ip

__all__ = ["IPAddress", "NetworkRule", "canonical_name", "parse_host", "parse_ip"]
