"""Tools: typed functions a plugin offers to an LLM, and how they are described and checked.

``@tool`` turns a typed function (sync or async, module-level or a method) into a ``Tool``
that keeps working as the plain function it was. The name defaults to the function's, the
description to its docstring's first paragraph, and the input schema comes from its
signature through pydantic (``Annotated[int, Field(ge=1, description=...)]`` works, and
Google-style ``Args:`` sections describe parameters). Arguments are validated against the
same model before every call.

The pydantic model behind a tool is built on first use, not at decoration or registration:
building one costs about a millisecond, and activating a thousand plugins should not.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, TypeVar, overload

from clawhost.discovery.manifest import TOOL_NAME_PATTERN
from clawhost.errors import Problem, ToolArgumentsInvalid

__all__ = ["Tool", "tool"]

F = TypeVar("F", bound=Callable[..., Any])
SchemaFormat = Literal["openai", "anthropic", "mcp"]
_TOOL_NAME = re.compile(TOOL_NAME_PATTERN)
_ARGS_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters)\s*:\s*$")
_ARG_LINE = re.compile(r"^\s{2,}(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


class _Spec:
    """What every binding of one tool shares: its identity and its lazily built model."""

    __slots__ = ("description", "function", "model", "name", "parameter_docs", "thread")

    def __init__(
        self, function: Callable[..., Any], name: str, description: str, thread: bool
    ) -> None:
        self.function = function
        self.name = name
        self.thread = thread
        summary, parameter_docs = _parse_docstring(inspect.getdoc(function) or "")
        self.description = description or summary
        self.parameter_docs = parameter_docs
        self.model: Any = None

    def arguments_model(self, bound: bool) -> Any:
        if self.model is None:
            self.model = _build_model(self, skip_first=bound)
        return self.model


class Tool(Generic[F]):
    """A function offered to an LLM, with its name, description and input schema.

    Calling a ``Tool`` calls the function (so plugin authors test it directly); the host
    calls it through ``invoke`` after validating the arguments.
    """

    __slots__ = ("__wrapped__", "_bound", "_spec", "is_async")

    def __init__(
        self,
        function: F,
        *,
        name: str | None = None,
        description: str | None = None,
        thread: bool = True,
    ) -> None:
        target = inspect.unwrap(function)
        tool_name: str = name or str(getattr(target, "__name__", ""))
        if not _TOOL_NAME.fullmatch(tool_name):
            raise ValueError(
                f"tool name {tool_name!r} must be 1-64 letters, digits, '_' or '-' "
                "(the OpenAI function-name rule); pass name=... to @tool"
            )
        self._spec = _Spec(function, tool_name, description or "", thread)
        self.__wrapped__: Callable[..., Any] = function
        self._bound = False
        self.is_async = _is_async(function)

    @classmethod
    def _binding(cls, spec: _Spec, callable_: Callable[..., Any]) -> Tool[Any]:
        bound: Tool[Any] = cls.__new__(cls)
        bound._spec = spec
        bound.__wrapped__ = callable_
        bound._bound = True
        bound.is_async = _is_async(callable_)
        return bound

    def __get__(self, instance: object, owner: type | None = None) -> Tool[Any]:
        # @tool on a method: reading it from an instance gives a tool bound to it.
        if instance is None or self._bound:
            return self
        method = self.__wrapped__.__get__(instance, owner)
        return Tool._binding(self._spec, method)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Tool {self.name}>"

    @property
    def name(self) -> str:
        """The name the LLM calls it by."""
        return self._spec.name

    @property
    def description(self) -> str:
        """What the tool does, for the LLM."""
        return self._spec.description

    @property
    def thread(self) -> bool:
        """Whether a sync tool runs in a worker thread (the default) or inline on the loop."""
        return self._spec.thread

    @property
    def function(self) -> Callable[..., Any]:
        """The underlying function (bound, for a method)."""
        return self.__wrapped__

    def _model(self) -> Any:
        return self._spec.arguments_model(self._bound)

    @property
    def input_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments (an object schema)."""
        schema: dict[str, Any] = self._model().model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return schema

    def validate(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check ``arguments`` against the schema; return them converted, ready to call with.

        Raises ``ToolArgumentsInvalid`` listing every problem.
        """
        from pydantic import ValidationError

        model = self._model()
        try:
            instance = model.model_validate(arguments if arguments is not None else {})
        except ValidationError as exc:
            raise ToolArgumentsInvalid(self.name, _problems(exc)) from None
        return dict(instance.__dict__)

    def schema(self, shape: SchemaFormat = "openai") -> dict[str, Any]:
        """This tool in one of the function-calling shapes: OpenAI, Anthropic or MCP."""
        if shape == "openai":
            return {
                "type": "function",
                "function": {
                    "name": self.name,
                    "description": self.description,
                    "parameters": self.input_schema,
                },
            }
        if shape == "anthropic":
            return {
                "name": self.name,
                "description": self.description,
                "input_schema": self.input_schema,
            }
        if shape == "mcp":
            return {
                "name": self.name,
                "description": self.description,
                "inputSchema": self.input_schema,
            }
        raise ValueError(f"unknown schema shape {shape!r}; expected openai, anthropic or mcp")


@overload
def tool(function: F, /) -> Tool[F]: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, thread: bool = True
) -> Callable[[F], Tool[F]]: ...


def tool(
    function: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    thread: bool = True,
) -> Tool[F] | Callable[[F], Tool[F]]:
    """Make a typed function a tool: ``@tool`` or ``@tool(name=..., description=...)``.

    ``thread=False`` runs a sync tool inline on the event loop instead of in a worker
    thread: for quick functions that never block, where the thread hop would dominate.
    """
    if function is not None:
        return Tool(function, name=name, description=description, thread=thread)
    return functools.partial(Tool, name=name, description=description, thread=thread)


def _is_async(function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(inspect.unwrap(function))


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph, and ``name -> description`` from a Google-style Args section."""
    paragraphs = doc.strip().split("\n\n")
    summary = " ".join(paragraphs[0].split()) if paragraphs and paragraphs[0] else ""
    if _ARGS_SECTION.match(paragraphs[0].splitlines()[0] if paragraphs[0] else ""):
        summary = ""
    parameters: dict[str, str] = {}
    inside = False
    current: str | None = None
    for line in doc.splitlines():
        if _ARGS_SECTION.match(line):
            inside, current = True, None
            continue
        if not inside:
            continue
        if line.strip() and not line.startswith((" ", "\t")):
            break  # the next section
        match = _ARG_LINE.match(line)
        if match and not match.group(1).startswith("*"):
            current = match.group(1)
            parameters[current] = match.group(3).strip()
        elif current and line.strip():
            parameters[current] += " " + line.strip()
    return summary, parameters


def _build_model(spec: _Spec, *, skip_first: bool) -> Any:
    from pydantic import ConfigDict, Field, create_model

    signature = inspect.signature(spec.function)
    hints = _type_hints(spec.function)
    parameters = list(signature.parameters.values())
    if skip_first and parameters:
        parameters = parameters[1:]
    fields: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise TypeError(
                f"tool {spec.name!r}: positional-only parameter {parameter.name!r} "
                "cannot take a named argument"
            )
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is parameter.empty else parameter.default
        described = spec.parameter_docs.get(parameter.name)
        fields[parameter.name] = (
            annotation,
            Field(default, description=described) if described else default,
        )
    return create_model(
        f"{spec.name}_arguments",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


def _type_hints(function: Callable[..., Any]) -> dict[str, Any]:
    import typing

    target = inspect.unwrap(getattr(function, "__func__", function))
    try:
        return typing.get_type_hints(target, include_extras=True)
    except (NameError, TypeError):
        return dict(getattr(target, "__annotations__", {}))


def _problems(exc: Any) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"]) or None
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown argument"
        elif error["type"] == "missing":
            message = "required argument is missing"
        problems.append(Problem(field, message[:1].lower() + message[1:]))
    return problems
