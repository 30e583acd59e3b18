"""What crosses a worker process's boundary, and how: JSON data, one object per line.

Both halves of process isolation use this module: the host (``_isolation``,
``_workerproc``) and the worker (``_worker``). Only JSON data crosses: a message is one
JSON object on one line (``json.dumps`` escapes newlines inside strings, so a line is
always a whole message). Values are converted with pydantic's ``to_jsonable_python``
(dataclasses such as ``Message``, pydantic models, datetimes, sets and any mapping
become JSON), and errors are sent as data and rebuilt on the other side: builtin
exceptions and clawhost's own errors as themselves, anything else as ``WorkerError``.
"""

from __future__ import annotations

import builtins
import json
import traceback
from collections.abc import Awaitable, Callable, Mapping
from pathlib import PurePath
from typing import Any

from clawhost.core.messages import Message, Response
from clawhost.errors import Problem, WorkerError

__all__ = [
    "MAX_LINE",
    "PROTOCOL",
    "TOOLS_MARK",
    "MethodProxy",
    "Record",
    "arg_from_wire",
    "arg_to_wire",
    "decode",
    "decode_error",
    "encode",
    "encode_error",
    "message_from_wire",
    "payload_from_wire",
    "public_methods",
    "record_from_wire",
    "to_wire",
]

#: The protocol's version; the worker refuses a start message of another version.
PROTOCOL = 2
#: Marks the host's tools handed to a provider in a worker (``{TOOLS_MARK: {...}}``).
TOOLS_MARK = "__clawhost_tools__"
#: The longest line either side accepts (a message above this is a protocol error).
MAX_LINE = 64 * 1024 * 1024
_PROBLEM = "__problem__"


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as a line: compact JSON, ASCII only, ending in a newline."""
    return json.dumps(message, separators=(",", ":")).encode("ascii") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """A line back into a message; ``ValueError`` when it is not a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError(f"expected a JSON object, got {type(message).__name__}")
    return message


def _fallback(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, BaseException):
        return encode_error(value, with_traceback=False)
    raise TypeError(
        f"{type(value).__qualname__} is not JSON data and cannot cross a process boundary"
    )


def _lenient(value: Any) -> Any:
    try:
        return _fallback(value)
    except TypeError:
        return repr(value)


def to_wire(value: Any, *, lenient: bool = False) -> Any:
    """``value`` as JSON data; ``TypeError`` for what has no JSON form (arbitrary objects),
    or, ``lenient``, its ``repr()`` instead (for event payloads, which only inform).

    Dataclasses (``Message``, ``Response``), pydantic models, datetimes (ISO text), sets
    and tuples (lists), bytes (text) and any mapping convert; exceptions become error data.
    """
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return to_jsonable_python(value, fallback=_lenient if lenient else _fallback)
    except PydanticSerializationError as exc:  # pydantic wraps what the fallback raised
        # What a serializer raised stays the cause (the sandbox may have stopped it).
        raise TypeError(str(exc)) from exc.__cause__


# -- errors -----------------------------------------------------------------------------------


def _args_to_wire(value: Any) -> Any:
    if isinstance(value, Problem):
        return {_PROBLEM: [value.field, value.message, value.expected, value.line]}
    if isinstance(value, tuple | list):
        return [_args_to_wire(item) for item in value]
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError("not plain data")


def _args_from_wire(value: Any) -> Any:
    if isinstance(value, dict) and _PROBLEM in value:
        field, message, expected, line = value[_PROBLEM]
        return Problem(field, message, expected, line)
    if isinstance(value, list):
        return tuple(_args_from_wire(item) for item in value)
    return value


def encode_error(error: BaseException, *, with_traceback: bool = True) -> dict[str, Any]:
    """An exception as data: its qualified type, its text, the arguments to rebuild it
    with (clawhost's errors and builtin exceptions) and, optionally, its traceback."""
    kind = type(error)
    data: dict[str, Any] = {
        "type": f"{kind.__module__}.{kind.__qualname__}",
        "message": str(error),
        "args": None,
    }
    try:
        if kind.__module__ == "clawhost.errors":
            data["args"] = _args_to_wire(error.__reduce__()[1])
        elif kind.__module__ == "builtins":
            data["args"] = _args_to_wire(error.args)
    except (TypeError, IndexError):
        pass  # rebuilt from its text, or as a WorkerError
    if with_traceback:
        data["traceback"] = "".join(traceback.format_exception(error))
    return data


def decode_error(data: Mapping[str, Any], plugin: str, *, from_host: bool = False) -> Exception:
    """The exception ``encode_error`` described, rebuilt on this side of the boundary.

    clawhost's errors and builtin exceptions come back as themselves (``PermissionDenied``
    with its fields, ``MemoryError``, ``ValueError``); any other type is a ``WorkerError``
    naming it. The other side's traceback, when sent, is attached as a note that says
    where it was raised: in ``plugin``'s worker process, or (``from_host``, decoding in a
    worker what the host answered) in the host process.
    """
    from clawhost import errors

    type_name = str(data.get("type") or "Exception")
    message = str(data.get("message") or "")
    args = data.get("args")
    module, _, name = type_name.rpartition(".")
    rebuilt: Exception | None = None
    candidate: Any = None
    if module == "clawhost.errors" and name in errors.__all__:
        candidate = getattr(errors, name)
    elif module == "builtins":
        candidate = getattr(builtins, name, None)
    elif type_name == "clawhost.runtime.loader.LoadProblem":
        from clawhost.runtime.loader import LoadProblem

        rebuilt = LoadProblem(message)
    if isinstance(candidate, type) and issubclass(candidate, Exception):
        try:
            rebuilt = candidate(*_args_from_wire(args)) if args is not None else candidate(message)
        except Exception:  # a constructor that wants other arguments: keep the text
            rebuilt = None
    remote_traceback = data.get("traceback")
    if rebuilt is None:
        rebuilt = WorkerError(plugin, type_name, message, remote_traceback)
    if remote_traceback:
        where = "the host process" if from_host else f"the worker process of plugin {plugin!r}"
        rebuilt.add_note(f"raised in {where}:\n{remote_traceback}")
    return rebuilt


# -- objects through proxies ---------------------------------------------------------------


class Record(dict[str, Any]):
    """A dataclass or model that crossed the boundary as a dict: its fields are keys, and
    attributes too (``place.latitude`` and ``place["latitude"]``), so code reading a
    provider's result works the same in both modes."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"Record({dict.__repr__(self)})"


_MESSAGE_MARK = "__clawhost_message__"
_RESPONSE_MARK = "__clawhost_response__"


def arg_to_wire(value: Any) -> Any:
    """One argument of a proxied method call as JSON data: a ``Message`` or ``Response``
    is marked, so the other side gets the object back; anything else as ``to_wire``."""
    if isinstance(value, Message):
        return {_MESSAGE_MARK: to_wire(value)}
    if isinstance(value, Response):
        return {_RESPONSE_MARK: to_wire(value)}
    return to_wire(value)


def arg_from_wire(value: Any) -> Any:
    """What ``arg_to_wire`` made, back: a ``Message``, a ``Response``, or ``Record``s."""
    if isinstance(value, dict) and len(value) == 1:
        if _MESSAGE_MARK in value:
            return Message(**value[_MESSAGE_MARK])
        if _RESPONSE_MARK in value:
            return Response(**value[_RESPONSE_MARK])
    return record_from_wire(value)


def record_from_wire(value: Any) -> Any:
    """A provider's JSON result with every object made a ``Record`` (lists stay lists)."""
    if isinstance(value, dict):
        return Record({key: record_from_wire(item) for key, item in value.items()})
    if isinstance(value, list):
        return [record_from_wire(item) for item in value]
    return value


class MethodProxy:
    """An object on the other side of the boundary, by its public methods: each is a
    coroutine function here that hands ``(method, args, kwargs)`` to ``call``."""

    #: Calls on it run no plugin code in this process (the other side guards them), so
    #: the provider registry hands it out as it is.
    __clawhost_no_plugin_code__ = True

    def __init__(
        self,
        name: str,
        methods: Mapping[str, str],
        call: Callable[[str, tuple[Any, ...], dict[str, Any]], Awaitable[Any]],
        where: str,
    ) -> None:
        self._name = name
        self._methods = dict(methods)
        self._call = call
        self._where = where

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name} ({self._where})>"

    def __dir__(self) -> list[str]:
        return sorted(self._methods)

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_") or method not in self._methods:
            raise AttributeError(
                f"provider {self._name!r} ({self._where}) has no method {method!r}"
            )
        forward = self._call

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await forward(method, args, kwargs)

        call.__name__ = call.__qualname__ = method
        return call


def public_methods(target: object) -> dict[str, str]:
    """The methods a proxy of ``target`` offers: public callables, ``"async"`` or ``"sync"``."""
    import inspect

    methods: dict[str, str] = {}
    for name in dir(target):
        if name.startswith("_"):
            continue
        try:
            value = getattr(target, name)
        except Exception:  # a property that fails is not a method
            continue
        if callable(value) and not isinstance(value, type):
            asynchronous = inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value)
            methods[name] = "async" if asynchronous else "sync"
    return methods


# -- messages and event payloads --------------------------------------------------------------


def message_from_wire(data: Mapping[str, Any]) -> Message:
    """A ``Message`` from its JSON form (what ``to_wire`` made of one)."""
    return Message(**data)


def payload_from_wire(event: str, payload: dict[str, Any], plugin: str) -> dict[str, Any]:
    """An event payload with the standard events' typed fields rebuilt: the ``Message`` of
    ``on_message_received``, the ``Response`` of ``on_response_sent``, the error of
    ``on_tool_called``. Other fields (and other events) stay JSON data."""
    if event == "on_message_received" and isinstance(payload.get("message"), dict):
        payload["message"] = Message(**payload["message"])
    elif event == "on_response_sent" and isinstance(payload.get("response"), dict):
        payload["response"] = Response(**payload["response"])
    elif event == "on_tool_called" and isinstance(payload.get("error"), dict):
        payload["error"] = decode_error(payload["error"], plugin)
    return payload
