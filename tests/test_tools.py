"""@tool: typed functions become tools with schemas in every function-calling shape."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from clawhost import HostContext, Tool, tool
from clawhost.errors import ToolArgumentsInvalid, ToolFailed, ToolNotFound


@tool
async def get_weather(
    location: str, units: Literal["metric", "imperial"] = "metric"
) -> dict[str, Any]:
    """Current weather for a location.

    Args:
        location: A city name, optionally with a country code.
        units: Temperature units.
    """
    return {"location": location, "units": units}


@tool(name="add_numbers", description="Add two integers.")
def add(a: int, b: Annotated[int, Field(ge=0, description="A non-negative addend")] = 1) -> int:
    return a + b


class Point(BaseModel):
    x: float
    y: float


class Geometry:
    def __init__(self, scale: float) -> None:
        self.scale = scale

    @tool
    def scaled(self, point: Point) -> dict[str, float]:
        """Scale a point."""
        return {"x": point.x * self.scale, "y": point.y * self.scale}


def test_a_tool_is_still_the_function_it_decorates() -> None:
    assert add(2, 3) == 5
    assert isinstance(add, Tool)
    assert add.name == "add_numbers"


async def test_an_async_tool_can_be_awaited_directly() -> None:
    assert await get_weather("Paris") == {"location": "Paris", "units": "metric"}


def test_name_and_description_come_from_the_function() -> None:
    assert get_weather.name == "get_weather"
    assert get_weather.description == "Current weather for a location."
    assert get_weather.is_async


def test_the_input_schema_comes_from_the_signature_and_docstring() -> None:
    schema = get_weather.input_schema

    assert schema["type"] == "object"
    assert schema["required"] == ["location"]
    assert schema["properties"]["location"] == {
        "type": "string",
        "description": "A city name, optionally with a country code.",
    }
    assert schema["properties"]["units"]["enum"] == ["metric", "imperial"]
    assert schema["properties"]["units"]["default"] == "metric"
    assert schema["additionalProperties"] is False


def test_annotated_fields_constrain_and_describe() -> None:
    properties = add.input_schema["properties"]

    assert properties["b"]["minimum"] == 0
    assert properties["b"]["description"] == "A non-negative addend"


def test_schemas_export_in_openai_anthropic_and_mcp_shapes() -> None:
    openai = add.schema("openai")
    anthropic = add.schema("anthropic")
    mcp = add.schema("mcp")

    assert openai["type"] == "function"
    assert openai["function"]["name"] == "add_numbers"
    assert openai["function"]["parameters"] == add.input_schema
    assert anthropic == {
        "name": "add_numbers",
        "description": "Add two integers.",
        "input_schema": add.input_schema,
    }
    assert mcp == {
        "name": "add_numbers",
        "description": "Add two integers.",
        "inputSchema": add.input_schema,
    }
    json.dumps([openai, anthropic, mcp])  # serialisable as they are


def test_a_method_tool_binds_to_its_instance_and_hides_self() -> None:
    geometry = Geometry(2.0)

    bound = geometry.scaled
    assert bound(Point(x=1, y=2)) == {"x": 2.0, "y": 4.0}
    assert list(bound.input_schema["properties"]) == ["point"]
    assert "$defs" in bound.input_schema  # the nested model travels with the schema


def test_tool_names_follow_the_openai_rule() -> None:
    def nameless() -> None: ...

    with pytest.raises(ValueError, match="1-64 letters"):
        tool(name="has spaces")(nameless)
    with pytest.raises(ValueError, match="1-64 letters"):
        tool(name="x" * 65)(nameless)


def test_validate_converts_and_lists_every_problem() -> None:
    assert add.validate({"a": "2", "b": 3}) == {"a": 2, "b": 3}

    with pytest.raises(ToolArgumentsInvalid) as caught:
        add.validate({"b": -1, "c": 1})

    fields = {problem.field: problem.message for problem in caught.value.problems}
    assert fields["a"] == "required argument is missing"
    assert "greater than or equal to 0" in fields["b"]
    assert fields["c"] == "unknown argument"
    assert caught.value.tool == "add_numbers"


async def test_invoke_validates_then_calls() -> None:
    context = HostContext.test_context()
    context.plugin_context("geo").register_tool(Geometry(3.0).scaled)

    result = await context.tools.invoke("scaled", {"point": {"x": 1, "y": 1}})

    assert result == {"x": 3.0, "y": 3.0}


async def test_invoke_of_an_unknown_tool_names_the_known_ones() -> None:
    context = HostContext.test_context()
    context.plugin_context("math").register_tool(add)

    with pytest.raises(ToolNotFound) as caught:
        await context.tools.invoke("subtract", {})

    assert caught.value.known == ("add_numbers",)


async def test_a_raising_tool_becomes_tool_failed_with_the_cause() -> None:
    @tool
    def explode() -> None:
        """Always fails."""
        raise RuntimeError("kaboom")

    context = HostContext.test_context()
    context.plugin_context("bomb").register_tool(explode)

    with pytest.raises(ToolFailed) as caught:
        await context.tools.invoke("explode")

    assert caught.value.plugin == "bomb"
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert "kaboom" in str(caught.value)


def test_registering_a_plain_function_makes_it_a_tool() -> None:
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    context = HostContext.test_context()
    registered = context.plugin_context("math").register_tool(multiply)

    assert registered.name == "multiply"
    assert context.tools.get("multiply").description == "Multiply two integers."


def test_schemas_list_every_registered_tool() -> None:
    context = HostContext.test_context()
    plugin = context.plugin_context("mixed")
    plugin.register_tool(add)
    plugin.register_tool(get_weather)

    names = [schema["name"] for schema in context.tools.schemas("anthropic")]

    assert names == ["add_numbers", "get_weather"]
