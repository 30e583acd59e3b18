"""Request paths the gateway refuses before routing, and the server's ``root_path``.

A path that could mean something else to a plugin's app than to the gateway's router is
refused (see ``path_problem``); ``strip_root`` and ``strip_root_raw`` take the server's
``root_path`` off the front of ``path`` and ``raw_path``, as uvicorn does.
"""

from __future__ import annotations

import re

__all__ = ["path_problem", "strip_root", "strip_root_raw"]

_ENCODED = re.compile(rb"%(2f|5c|2e)", re.IGNORECASE)
_ENCODED_NAMES = {b"2f": "slash", b"5c": "backslash", b"2e": "dot"}


def path_problem(path: str, raw_path: bytes | None) -> str | None:
    """Why a request path is refused before routing, or ``None`` when it is acceptable."""
    if not path.startswith("/"):
        return "the path must start with '/'"
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in path):
        return "control character in the path"
    if "\\" in path:
        return "backslash in the path"
    if "//" in path:
        return "empty segment ('//') in the path"
    if any(segment in (".", "..") for segment in path.split("/")):
        return "'.' or '..' segment in the path"
    if raw_path is not None:
        encoded = _ENCODED.search(raw_path)
        if encoded is not None:
            what = _ENCODED_NAMES[encoded.group(1).lower()]
            return f"percent-encoded {what} ({encoded.group().decode('ascii')}) in the path"
        if any(byte < 0x20 or byte == 0x7F for byte in raw_path) or b"\\" in raw_path:
            return "control character or backslash in the raw path"
    return None


def strip_root(path: str, root: str) -> str:
    """``path`` without the server's ``root_path``, when it starts with it (uvicorn's way)."""
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path


def strip_root_raw(raw: bytes, root: str) -> bytes:
    encoded = root.encode("utf-8")
    if encoded and (raw == encoded or raw.startswith(encoded + b"/")):
        return raw[len(encoded) :] or b"/"
    return raw
