"""The PML tree and its Python builder API: validation, normalization, XML round trip."""

from __future__ import annotations

import pytest

from asynclm.promptcache import (
    Assistant,
    Module,
    Parameter,
    PMLError,
    Prompt,
    Role,
    Schema,
    Select,
    System,
    Union,
    User,
    parse_prompt,
    parse_schema,
)

TRAVEL = Schema(
    "travel",
    [
        System("You are a travel agent."),
        Module("tools", "Tool docs ..."),
        Union([Module("doc-paris", "Paris text ..."), Module("doc-tokyo", "Tokyo text ...")]),
        Module("trip", ["Plan a trip of ", Parameter("days", 4), " days."]),
        User("..."),
    ],
)


def test_builder_matches_parsed_xml() -> None:
    xml = """
    <schema name="travel">
      <system>You are a travel agent.</system>
      <module name="tools">Tool docs ...</module>
      <union>
        <module name="doc-paris">Paris text ...</module>
        <module name="doc-tokyo">Tokyo text ...</module>
      </union>
      <module name="trip">Plan a trip of <parameter name="days" len="4"/> days.</module>
      <user>...</user>
    </schema>"""
    assert parse_schema(xml) == TRAVEL


@pytest.mark.parametrize("indent", ["  ", None, "\t"])
def test_schema_round_trip(indent: str | None) -> None:
    assert parse_schema(TRAVEL.to_xml(indent)) == TRAVEL


def test_round_trip_keeps_special_characters() -> None:
    text = "a < b && c > d \"quoted\" 'single' ]]> \r\n\ttab\u00a0nbsp \U0001f600"
    schema = Schema(
        "s",
        [text, Module("m", [text, Parameter("p", 2), " "])],
        encoding="prefix",
    )
    assert parse_schema(schema.to_xml()) == schema
    assert parse_schema(schema.to_xml(None)) == schema
    assert 'encoding="prefix"' in schema.to_xml()


def test_prompt_round_trip() -> None:
    prompt = Prompt(
        "travel",
        [Select("doc-tokyo"), Select("trip", {"days": 'three\n"3"\t<&>'})],
        ["Some text ", User("What should I see?"), Assistant("Let me")],
    )
    assert parse_prompt(prompt.to_xml()) == prompt
    element_only = Prompt("travel", [Select("a", children=[Select("b")])], [User("hi")])
    assert parse_prompt(element_only.to_xml()) == element_only
    assert "\n" in element_only.to_xml()


def test_nested_modules_and_iter_modules() -> None:
    schema = Schema("s", [Module("a", ["x", Module("b", "y"), Union([Module("c"), Module("d")])])])
    paths = [path for path, _ in schema.iter_modules()]
    assert paths == [("a",), ("a", "b"), ("a", "c"), ("a", "d")]


def test_normalization_merges_and_drops_formatting_whitespace() -> None:
    module = Module("m", ["a", "b", "", Parameter("p", 1), "c"])
    assert module.children == ("ab", Parameter("p", 1), "c")
    element_only = Module("m", ["\n  ", Module("x"), "\n  ", Module("y"), "\n"])
    assert element_only.children == (Module("x"), Module("y"))
    mixed = Module("m", ["text", Module("x"), " ", Module("y")])
    assert mixed.children == ("text", Module("x"), " ", Module("y"))
    assert Module("m", "\u00a0").children == ("\u00a0",)  # not XML whitespace: kept


def test_dataclasses_are_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        TRAVEL.name = "other"  # type: ignore[misc]
    assert hash(TRAVEL) == hash(parse_schema(TRAVEL.to_xml()))
    assert Select("a", location=(1, 2)) == Select("a", location=(3, 4))
    assert Select("a", {"y": "1", "x": "2"}).args == (("x", "2"), ("y", "1"))


def test_role_helpers() -> None:
    assert System("x") == Role("system", ["x"])
    assert User([Module("m")]).children == (Module("m"),)
    assert Assistant().children == ()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Module("bad name"), "invalid module name"),
        (lambda: Module("1abc"), "invalid module name"),
        (lambda: Module("user"), "reserved"),
        (lambda: Parameter("p", 0), "positive integer"),
        (lambda: Parameter("p", True), "positive integer"),
        (lambda: Union([]), "at least one member"),
        (lambda: Union(["text"]), "members must be modules"),  # type: ignore[list-item]
        (lambda: Role("tool", "x"), "unknown role"),  # type: ignore[arg-type]
        (lambda: User([Module("m", [System("x")])]), "may not nest"),
        (lambda: Schema("s", encoding="fast"), "encoding"),  # type: ignore[arg-type]
        (lambda: Schema("s", [Parameter("p", 2)]), "outside any module"),
        (lambda: Schema("s", [System(["x", Parameter("p", 2)])]), "outside any module"),
        (lambda: Schema("s", [Module("a"), Module("a")]), "duplicate module name 'a'"),
        (lambda: Schema("s", [Module("a"), Union([Module("a")])]), "duplicate module name"),
        (lambda: Schema("s", [Union([Module("a"), Module("a")])]), "duplicate module name"),
        (lambda: Module("m", [User(Module("a")), Module("a")]), "duplicate module name"),
        (lambda: Module("m", [Parameter("p", 1), Parameter("p", 2)]), "duplicate parameter"),
        (lambda: Module("m", [3]), "unexpected child"),  # type: ignore[list-item]
        (lambda: Select("m", {"p": 3}), "must be a string"),  # type: ignore[dict-item]
        (lambda: Prompt("s", text=[User([Module("m")])]), "free text"),
    ],
)
def test_builder_errors(build, message: str) -> None:
    with pytest.raises(PMLError, match=message):
        build()


def test_same_name_in_different_scopes_is_fine() -> None:
    schema = Schema("s", [Module("a", [Module("x")]), Module("b", [Module("x")])])
    assert [p for p, _ in schema.iter_modules()] == [("a",), ("a", "x"), ("b",), ("b", "x")]


def test_pml_error_is_a_value_error_with_location() -> None:
    err = PMLError("boom", line=3, column=7)
    assert isinstance(err, ValueError)
    assert str(err) == "boom (line 3, column 7)"
    assert PMLError("x").at(1, 2).line == 1
    assert err.at(9, 9) is err
