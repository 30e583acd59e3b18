"""Network permission rules: ``host:port`` patterns, parsed once and matched as addresses.

A pattern's host is ``*`` (anything), ``*.example.com`` (any name below example.com, at any
depth, but not example.com itself), a DNS name, an IPv4 address or a bracketed IPv6
address; its port is a number or ``*``. Addresses are compared as addresses, never as
text: every spelling the operating system accepts for an IPv4 address (``127.1``,
``0x7f000001``, ``2130706433``, ``0177.0.0.1``) is parsed the way ``inet_aton`` does, and
an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is the IPv4 address it maps.
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Literal

__all__ = ["IPAddress", "NetworkRule", "canonical_name", "parse_host", "parse_ip"]

IPAddress = IPv4Address | IPv6Address
RuleKind = Literal["any", "suffix", "name", "ip"]

# One part of an inet_aton address: hex (0x1f), octal (017, a leading zero) or decimal.
_ATON_PART = re.compile(r"0[xX][0-9A-Fa-f]+|0[0-7]*|[1-9][0-9]*")


def _parse_inet_aton(text: str) -> IPv4Address | None:
    """The IPv4 address ``inet_aton`` (and so ``getaddrinfo``) reads from ``text``, if any.

    Implemented here rather than calling ``socket.inet_aton``, which tolerates trailing
    garbage on some C libraries where ``getaddrinfo`` does not (``"127.0.0.1 x"`` is a
    name to the resolver, not an address).
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_ATON_PART.fullmatch(part) for part in parts):
        return None
    numbers = [
        int(part, 0) if part[:2].lower() == "0x" else int(part, 8 if part[0] == "0" else 10)
        for part in parts
    ]
    *head, last = numbers
    if any(number > 255 for number in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, number in enumerate(head):
        value |= number << (8 * (3 - index))
    return IPv4Address(value)


def parse_ip(text: str) -> IPAddress | None:
    """``text`` as an IP address in any spelling the OS accepts, normalised; else ``None``.

    IPv4-mapped IPv6 addresses become IPv4 addresses and IPv6 scope ids are dropped, so
    one host has one spelling.
    """
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ip_address(candidate)
    except ValueError:
        return _parse_inet_aton(text) if text[:1].isdigit() else None
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return IPv6Address(candidate.split("%", 1)[0])
    return address


def canonical_name(name: str) -> str:
    """A DNS name as the resolver sees it: lower case, IDNA-encoded, no trailing dot."""
    name = name.rstrip(".").lower()
    if not name.isascii():
        # Not a valid IDNA name: kept as is, it can match only "*", which is right.
        with contextlib.suppress(UnicodeError):
            name = name.encode("idna").decode("ascii")
    return name


def parse_host(host: str) -> IPAddress | str:
    """A host as the OS will treat it: an address, or otherwise a canonical DNS name."""
    address = parse_ip(host)
    return address if address is not None else canonical_name(host)


_PATTERN = re.compile(r"^(?P<host>\[[^\]]*\]|[^:\[\]]+|\*):(?P<port>\*|\d{1,5})$")


@dataclass(frozen=True, slots=True)
class NetworkRule:
    """One ``host:port`` network permission, parsed.

    ``kind`` is ``any`` (host ``*``), ``suffix`` (``*.example.com``: ``host`` holds
    ``.example.com``), ``name`` or ``ip`` (``address`` holds the normalised address).
    ``port`` is ``None`` for ``*``.
    """

    kind: RuleKind
    host: str
    port: int | None
    address: IPAddress | None = None

    @classmethod
    def parse(cls, text: str) -> NetworkRule:
        """Parse ``host:port``; raise ``ValueError`` saying what is wrong."""
        if cls is NetworkRule:  # rules are immutable: a thousand plugins asking for the
            return _parse_rule(text)  # same host share one parse
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> NetworkRule:
        match = _PATTERN.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not 'host:port' (port a number or *)")
        host, port_text = match["host"], match["port"]
        port = None if port_text == "*" else int(port_text)
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"{text!r}: port {port} is not in 1-65535")
        if host == "*":
            return cls("any", "*", port)
        if host.startswith("*."):
            suffix = canonical_name(host[1:])
            if not suffix.strip(".") or "*" in suffix:
                raise ValueError(f"{text!r}: a wildcard needs a domain after '*.'")
            return cls("suffix", suffix, port)
        address = parse_ip(host)
        if address is not None:
            return cls("ip", str(address), port, address)
        if host.startswith("[") or "*" in host:
            raise ValueError(f"{text!r}: {host} is not a valid address or name")
        return cls("name", canonical_name(host), port)

    def __str__(self) -> str:
        if self.kind == "suffix":
            host = "*" + self.host
        elif isinstance(self.address, IPv6Address):
            host = f"[{self.host}]"
        else:
            host = self.host
        return f"{host}:{'*' if self.port is None else self.port}"

    def _port_ok(self, port: int | None) -> bool:
        # A port of None in a query means "any port will do" (getaddrinfo without one).
        return self.port is None or port is None or self.port == port

    def matches(self, host: IPAddress | str, port: int | None) -> bool:
        """Whether this rule allows ``host`` (from ``parse_host``) on ``port``."""
        if not self._port_ok(port):
            return False
        if self.kind == "any":
            return True
        if isinstance(host, str):
            if self.kind == "name":
                return host == self.host
            return self.kind == "suffix" and host.endswith(self.host)
        return self.address == host

    def covers(self, other: NetworkRule) -> bool:
        """Whether everything ``other`` allows, this rule allows too (host grant vs ask)."""
        if self.port is not None and other.port != self.port:
            return False
        if self.kind == "any":
            return True
        if other.kind == "any":
            return False
        if self.kind == "suffix":
            return other.kind in ("suffix", "name") and other.host.endswith(self.host)
        return other.kind == self.kind and other.host == self.host


@functools.lru_cache(maxsize=4096)
def _parse_rule(text: str) -> NetworkRule:
    return NetworkRule._parse(text)
