"""Tool calling (trainer_backend/tool_calls.py): published datasets' tools and calls read into the one canonical
form (real rows from OpenAI-format, ShareGPT/glaive and BFCL data, tests/data/tools/calls_*), the specific message a
broken call gets, calls read back from what models write in each chat template's style, and their scores."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainer_backend.tool_calls import (ToolFormatError, call_problems, calls_from_ground_truth, normalize_call,
                                        normalize_calls, normalize_tools, tool_names)
from trainer_backend.tool_output import (TOOL_METRICS, GeneratedCalls, extract_calls, format_call, score_calls,
                                         tool_call_score)

DATA = Path(__file__).resolve().parent / "data" / "tools"


def rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


ZAVA = rows("calls_zava_openai.jsonl")[0]
GLAIVE = rows("calls_glaive_sharegpt.jsonl")
BFCL = {row["id"]: row for row in rows("calls_bfcl_parallel_multiple.jsonl")}

WEATHER = {"name": "get_weather", "description": "Weather forecast for a city",
           "parameters": {"type": "object", "required": ["city"], "properties": {
               "city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"type": "string", "enum": ["c", "f"]}}}}
SEARCH = {"name": "search", "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                                           "required": ["q"], "additionalProperties": False}}
TOOLS = normalize_tools([WEATHER, SEARCH])


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


# --------------------------------------------------------------------------- published shapes -> canonical

def test_openai_fine_tuning_rows() -> None:
    tools = normalize_tools(ZAVA["tools"])
    assert tools == ZAVA["tools"]  # already canonical: unchanged
    assert tool_names(tools) == ["exchange_delivered_order_items", "find_user_id_by_email", "get_user_details"]
    made = [normalize_call(c) for m in ZAVA["messages"] for c in m.get("tool_calls", [])]
    assert made[0] == {"id": "call_4e3412ec4c0840a5a1631bdd", "type": "function", "function": {
        "name": "find_user_id_by_email", "arguments": {"email": "sophia.lee4144@example.com"}}}
    assert made[-1]["function"]["arguments"]["item_ids"] == ["7848293342"]  # the JSON string parsed
    assert [call_problems(c, tools) for c in made] == [[], [], []]
    assert format_call(made[1]) == 'get_user_details(user_id="sophia_lee_8294")'


def test_sharegpt_glaive_rows() -> None:
    recipes = GLAIVE[0]
    assert isinstance(recipes["tools"], str)  # a JSON string of bare {name, description, parameters}
    assert normalize_tools(recipes["tools"]) == [{"type": "function", "function": {
        "name": "search_recipes", "description": "Search for recipes based on ingredients",
        "parameters": {"type": "object", "properties": {"ingredients": {
            "type": "array", "items": {"type": "string"}, "description": "The ingredients to search for"}},
            "required": ["ingredients"]}}}]
    movie = GLAIVE[1]
    calls = [normalize_call(t["value"]) for t in movie["conversations"] if t["from"] == "function_call"]
    assert calls == [call("get_movie_details", movie_id="12345"), call("get_movie_details", movie_id="67890")]
    assert all(not call_problems(c, normalize_tools(movie["tools"])) for c in calls)
    assert tool_names(normalize_tools(GLAIVE[2]["tools"])) == ["find_nearest_park", "calculate_distance"]
    assert normalize_tools(GLAIVE[3]["tools"]) == []  # "[]": a plain chat row
    calories = GLAIVE[4]  # the published call does not fit its own schema
    made = normalize_call(next(t["value"] for t in calories["conversations"] if t["from"] == "function_call"))
    assert call_problems(made, normalize_tools(calories["tools"])) == [
        "argument 'calories_per_item': expected number, got [150, 350, 800]"]


def test_bfcl_types_become_json_schema() -> None:
    integral, rectangle = normalize_tools(BFCL["parallel_multiple_3"]["function"])
    assert integral["function"]["parameters"]["type"] == "object"  # "dict"
    assert integral["function"]["parameters"]["properties"]["a"] == {"type": "number",  # "float"
                                                                     "description": "The lower bound of the interval."}
    assert rectangle["function"]["parameters"]["required"] == ["perimeter", "area", "property"]
    date = normalize_tools(BFCL["parallel_multiple_57"]["function"])[1]["function"]["parameters"]["properties"]["date"]
    assert date == {"description": "The date of the flight. Default ''"}  # "any": no type at all
    coordinates = normalize_tools(BFCL["parallel_multiple_63"]["function"])[0]["function"]["parameters"][
        "properties"]["coordinates"]
    assert coordinates["type"] == "array" and coordinates["items"] == {"type": "number"}  # tuple of float
    budget = normalize_tools(BFCL["parallel_multiple_65"]["function"])[1]["function"]["parameters"]["properties"][
        "budget"]
    assert budget["type"] == "object" and budget["properties"]["min"]["type"] == "number"


def test_type_names_everywhere_in_a_schema() -> None:
    schema = {"type": "dict", "properties": {
        "type": {"type": "str"},  # a property called "type" is a name, not a keyword
        "n": {"type": ["int", "float", "any"]}, "tags": {"type": "list", "items": {"type": "bool"}},
        "pair": {"type": ["Tuple", "null"], "prefixItems": [{"type": "int"}, {"type": "float"}]},
        "meta": {"type": "dict", "additionalProperties": {"anyOf": [{"type": "str"}, {"type": "int"}]}}}}
    props = normalize_tools([{"name": "f", "parameters": schema}])[0]["function"]["parameters"]["properties"]
    assert props["type"] == {"type": "string"} and props["n"] == {}
    assert props["tags"] == {"type": "array", "items": {"type": "boolean"}}
    assert props["pair"] == {"type": ["array", "null"], "prefixItems": [{"type": "integer"}, {"type": "number"}]}
    assert props["meta"]["additionalProperties"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}


def test_tool_shapes() -> None:
    wrapped = normalize_tools([{"type": "function", "function": {"name": "now"}}])
    assert wrapped == [{"type": "function", "function": {"name": "now", "description": "", "parameters": {
        "type": "object", "properties": {}, "required": []}}}]
    assert normalize_tools('{"name": "now"}') == wrapped  # one object, as JSON text
    assert normalize_tools([{"name": "now", "parameters": None}]) == wrapped  # legacy `functions` item
    assert normalize_tools(None) == normalize_tools("") == normalize_tools(" [] ") == []


@pytest.mark.parametrize("tools, message, fix", [
    ('[{"name": "f",}]', "tools is not valid JSON: Expecting property name enclosed in double quotes at character 15",
     "list of"),
    (["get_weather"], "tool 1 is a str ('get_weather'), not an object", "list of"),
    ([{"description": "no name"}], "tool 1 has no name", 'non-empty "name"'),
    ([WEATHER, {"name": "  "}], "tool 2 has no name", "name"),
    ([WEATHER, WEATHER], "tool 'get_weather' is declared twice", "its own name"),
    ([{"name": "f", "parameters": {"type": "string"}}], "parameters of tool 'f' are a 'string' schema, not an object "
                                                        "schema", "named arguments"),
    ([{"name": "f", "parameters": ["city"]}], "parameters of tool 'f' are a list, not a JSON Schema object", ""),
    ([{"name": "f", "parameters": {"properties": {"a": {"type": "strng"}}}}],
     "parameters of tool 'f' are not a valid JSON Schema at properties/a/type: 'strng' is not valid", "types:"),
    ({"tools": 3}, "tool 1 has no name", ""),
    (7, "tools are a int, not a list of tools", ""),
])
def test_broken_tools(tools: Any, message: str, fix: str) -> None:
    with pytest.raises(ToolFormatError) as caught:
        normalize_tools(tools)
    assert str(caught.value).startswith(message) and caught.value.message == str(caught.value)
    assert fix in caught.value.fix and caught.value.fix


# --------------------------------------------------------------------------- calls

@pytest.mark.parametrize("value", [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
    {"name": "get_weather", "arguments": '{"city": "Paris"}'},  # legacy OpenAI function_call
    {"name": "get_weather", "arguments": {"city": "Paris"}},  # glaive / Hermes
    {"name": "get_weather", "parameters": {"city": "Paris"}},  # Llama 3.1 JSON
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',  # a JSON string of any of these
])
def test_call_shapes(value: Any) -> None:
    made = normalize_call(value)
    assert made["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert made["type"] == "function" and made.get("id", "call_1") == "call_1"


def test_calls() -> None:
    assert normalize_call({"name": "now", "arguments": None}) == call("now")
    assert normalize_call({"name": "now", "arguments": ""}) == call("now")
    answers = '[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "search", "arguments": {"q": "x"}}]'
    assert normalize_calls(answers) == [call("get_weather", city="Paris"), call("search", q="x")]  # xLAM `answers`
    assert normalize_calls({"name": "now"}) == [call("now")] and normalize_calls(None) == []


@pytest.mark.parametrize("value, message", [
    ({"name": "get_weather", "arguments": '{"city": "Paris"'},
     "arguments of call 'get_weather' are not a JSON object: Expecting ',' delimiter at character 17"),
    ({"name": "get_weather", "arguments": '["Paris"]'}, "arguments of call 'get_weather' are not a JSON object: got"),
    ({"name": "get_weather", "arguments": "Paris"}, "arguments of call 'get_weather' are not a JSON object: Expecting"),
    ({"arguments": {}}, "a call has no name"),
    ("get_weather(Paris)", "call is not valid JSON"),
    (["get_weather"], "a call is a list"),
])
def test_broken_calls(value: Any, message: str) -> None:
    with pytest.raises(ToolFormatError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        normalize_call(value)


def test_bfcl_ground_truth() -> None:
    rectangle = calls_from_ground_truth(BFCL["parallel_multiple_3"]["ground_truth"])
    assert rectangle == [call("get_rectangle_property", perimeter=14, area=15, property="width"),  # [""]: left out
                         call("get_rectangle_property", perimeter=14, area=15, property="length", tolerance=0.1)]
    weather = calls_from_ground_truth(json.dumps(BFCL["parallel_multiple_63"]["ground_truth"]))
    assert weather[0] == call("weather.get_by_coordinates_date", coordinates=[40.7128, -74.006], date="2021-01-15")
    assert len(weather) == 4 and [c["function"]["name"] for c in weather].count("weather.get_by_city_date") == 2
    homes = calls_from_ground_truth(BFCL["parallel_multiple_65"]["ground_truth"])
    assert homes[0]["function"]["arguments"]["budget"] == {"min": 500000, "max": 800000}  # nested options
    for row in BFCL.values():  # every chosen call fits its row's tools (raw BFCL functions are read too)
        for made in calls_from_ground_truth(row["ground_truth"]):
            assert call_problems(made, normalize_tools(row["function"])) == []
            assert call_problems(made, row["function"]) == []
    with pytest.raises(ToolFormatError, match="ground truth of 'f' is a list"):
        calls_from_ground_truth([{"f": [1]}])


@pytest.mark.parametrize("made, problems", [
    (call("get_weather", city="Paris", days=3, unit="c"), []),
    (call("get_wether", city="Paris"),
     ["calls 'get_wether', which the row's tools do not declare (declared: get_weather, search)"]),
    (call("get_weather", city="Paris", unit="kelvin"), ["argument 'unit': 'kelvin' is not one of ['c', 'f']"]),
    (call("get_weather", days=3), ["missing required argument 'city'"]),
    (call("get_weather", city="Paris", days="3"), ["argument 'days': expected integer, got '3'"]),
    (call("get_weather", city="Paris", days=3.0), []),  # 3.0 is an integer in JSON
    (call("search", q="x", limit=5), ["unexpected argument 'limit'"]),
    (call("search"), ["missing required argument 'q'"]),
])
def test_call_problems(made: dict, problems: list[str]) -> None:
    assert call_problems(made, TOOLS) == problems


def test_call_problems_more() -> None:
    assert call_problems(call("f"), []) == ["calls 'f', which the row's tools do not declare (declared: none)"]
    price = normalize_tools([{"name": "buy", "parameters": {"type": "dict", "properties": {
        "price": {"type": "float"}, "where": {"type": "dict", "properties": {"city": {"type": "str"}},
                                              "required": ["city"]}}}}])
    assert call_problems(call("buy", price=3, where={"city": "Oslo"}), price) == []  # an integer is a number
    assert call_problems(call("buy", where={}), price) == ["missing required argument 'where.city'"]
    assert call_problems(call("buy", where={"city": 1}), price) == ["argument 'where.city': expected string, got 1"]


# --------------------------------------------------------------------------- what models write

PARIS = call("get_weather", city="Paris")
OSLO = call("get_weather", city="Oslo", days=2)


@pytest.mark.parametrize("text, calls, content", [
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>', [PARIS], ""),
    ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
     '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}\n</tool_call>',
     [PARIS, OSLO], "Let me check."),  # Hermes / Qwen, parallel calls
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}', [PARIS], ""),  # cut before the close
    ('<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n<parameter=days>\n2\n</parameter>\n'
     '</function>\n</tool_call>', [OSLO], ""),  # Qwen3-Coder
    ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]</s>', [PARIS], ""),  # Mistral v3
    ('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo", "days": 2}',
     [PARIS, OSLO], ""),  # Mistral v11+
    ('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>', [PARIS], ""),  # Llama 3.1
    ('{"name": "get_weather", "parameters": {"city": "Paris"}}', [PARIS], ""),  # Llama 3.x JSON, no tag
    ('```json\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]\n```', [PARIS], ""),
    ('<function=get_weather>{"city": "Paris"}</function>', [PARIS], ""),  # functionary / Llama 3.1 custom
    ("It is sunny in Paris today.", [], "It is sunny in Paris today."),
    ('{"name": "Weng", "age": 12}', [], '{"name": "Weng", "age": 12}'),  # JSON, but an answer
    ("Use max(a=1) in the formula.", [], "Use max(a=1) in the formula."),
    ("", [], ""),
])
def test_extract_calls(text: str, calls: list[dict], content: str) -> None:
    assert extract_calls(text) == GeneratedCalls(calls, content, False)


def test_extract_mistral_ids() -> None:
    made = extract_calls('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}]')
    assert made.calls == [{**PARIS, "id": "a1b2c3d4e"}]
    assert extract_calls('[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Paris"}').calls[0]["id"] == \
        "a1b2c3d4e"


@pytest.mark.parametrize("text, calls", [
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"</tool_call>', []),  # broken JSON
    ('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n<tool_call>{"name": </tool_call>',
     [PARIS]),  # one good, one broken
    ('<tool_call>{"city": "Paris"}</tool_call>', []),  # no name
    ('{"name": "get_weather", "arguments": {"city": ', []),  # cut off
    ('{"name": "get_weather", "arguments": "{city: Paris}"}', []),  # arguments not JSON
    ("[TOOL_CALLS]get_weather[ARGS]{city: Paris}", []),
    ("<|python_tag|>import os", []),
])
def test_extract_malformed(text: str, calls: list[dict]) -> None:
    made = extract_calls(text)
    assert made.malformed and made.calls == calls


def test_extract_never_raises() -> None:
    for text in ("[" * 100_000, "<tool_call>" + "[" * 100_000, None, 42, "<function=f>\x00</function>"):
        assert isinstance(extract_calls(text), GeneratedCalls)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- scores

def predicted(text: str) -> GeneratedCalls:
    return extract_calls(text)


HERMES = '<tool_call>{{"name": "{}", "arguments": {}}}</tool_call>'


@pytest.mark.parametrize("text, reference, scores", [
    (HERMES.format("get_weather", '{"city": "Paris"}'), [PARIS], (1, 1, 1, 1, None)),
    (HERMES.format("get_weather", '{"city": "Paris", "days": 1.0}'),  # 1.0 == 1, key order irrelevant
     [call("get_weather", days=1, city="Paris")], (1, 1, 1, 1, None)),
    (HERMES.format("get_weather", '{"city": "Lyon"}'), [PARIS], (1, 1, 0, 1, None)),
    (HERMES.format("get_weather", '{"city": "Paris", "unit": "kelvin"}'), [PARIS], (1, 1, 0, 0, None)),
    (HERMES.format("search", '{"q": "Paris"}'), [PARIS], (1, 0, 0, 1, None)),
    ("It will be sunny.", [PARIS], (0, 0, 0, None, None)),
    ('<tool_call>{"name": "get_weather", "arguments": {', [PARIS], (0, 0, 0, None, None)),
    (HERMES.format("get_weather", '{"city": "Oslo", "days": 2}') + HERMES.format("get_weather", '{"city": "Paris"}'),
     [PARIS, OSLO], (1, 1, 1, 1, None)),  # parallel calls in another order
    (HERMES.format("get_weather", '{"city": "Paris"}'), [PARIS, OSLO], (1, 0, 0, 1, None)),
    ("Hello! How can I help?", [], (None, None, None, None, 1)),
    (HERMES.format("get_weather", '{"city": "Paris"}'), [], (None, None, None, 1, 0)),
    ("<tool_call>{broken</tool_call>", [], (None, None, None, None, 0)),
])
def test_score_calls(text: str, reference: list[dict], scores: tuple) -> None:
    got = score_calls(predicted(text), reference, TOOLS)
    assert tuple(got.values()) == scores and list(got) == list(TOOL_METRICS)


def test_tool_metrics_say_what_they_mean() -> None:
    assert set(TOOL_METRICS) == {"valid_call", "tool_name", "exact_arguments", "schema_valid", "no_call"}
    assert TOOL_METRICS["valid_call"] == ("Valid call rate", "answers that should call a tool and do, in a form "
                                                             "that parses")
    assert all(label and meaning for label, meaning in TOOL_METRICS.values())


@pytest.mark.parametrize("text, reference, reward", [
    (HERMES.format("get_weather", '{"city": "Paris"}'), [PARIS], 1.0),
    (HERMES.format("get_weather", '{"city": "Lyon"}'), [PARIS], 0.7),  # right tool, fitting but wrong arguments
    (HERMES.format("get_weather", '{"city": "Paris", "unit": "kelvin"}'), [PARIS], 0.5),  # off-schema
    (HERMES.format("get_wether", '{"city": "Paris"}'), [PARIS], 0.2),  # parses, nothing else right
    ("Paris will be sunny.", [PARIS], 0.0),
    ("<tool_call>{broken</tool_call>", [PARIS], 0.0),
    (HERMES.format("get_weather", '{"city": "Paris"}'), [PARIS, OSLO], 0.7),  # half the calls
    (HERMES.format("get_weather", '{"city": "Paris"}') * 2, [PARIS], 0.7),  # an extra call costs
    (HERMES.format("get_weather", '{"city": "Paris"}') + "<tool_call>{oops</tool_call>", [PARIS], 0.8),
    ("Hello! How can I help?", [], 1.0),
    (HERMES.format("get_weather", '{"city": "Paris"}'), [], 0.0),
    ("<tool_call>{oops</tool_call>", [], 0.0),
])
def test_tool_call_score(text: str, reference: list[dict], reward: float) -> None:
    assert tool_call_score(text, reference, TOOLS) == pytest.approx(reward)


def test_format_call() -> None:
    assert format_call(call("get_weather", city="Paris", days=3)) == 'get_weather(city="Paris", days=3)'
    assert format_call({"name": "f", "arguments": '{"on": true, "x": null}'}) == "f(on=true, x=null)"
    assert format_call(call("now")) == "now()"
    assert format_call(call("say", text="Zürich")) == 'say(text="Zürich")'
