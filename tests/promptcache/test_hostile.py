"""Hostile and careless input to Prompt Cache: every fault is a `PMLError`, any text lays out.

Classes covered: text XML cannot carry (builder accepts it, XML refuses it clearly), sources as
any bytes-like object, declared encodings Python does not know or cannot decode with, builder
trees nested past the limit (no `RecursionError`, whichever node kind nests), and `<special>`
text (schemas only).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynclm.engine.engine import Engine
from asynclm.engine.loader import LoadedModel
from asynclm.promptcache import (
    Module,
    Parameter,
    PMLError,
    Prompt,
    PromptCache,
    Role,
    Schema,
    Select,
    Special,
    Union,
    User,
    layout_schema,
    parse_prompt,
    parse_schema,
)
from asynclm.promptcache.schema import MAX_DEPTH, NOT_XML

NON_XML = [chr(c) for c in range(0x20) if c not in (9, 10, 13)] + ["\ud800", "\udfff", "\ufffe"]


def encode(text: str, *, special: bool = False) -> list[int]:
    return [ord(c) for c in text]


@pytest.mark.parametrize("char", NON_XML, ids=[f"U+{ord(c):04X}" for c in NON_XML])
def test_the_builder_carries_any_text_and_xml_refuses_it_clearly(char: str) -> None:
    text = f"page 1{char}page 2"
    schema = Schema("s", [Module("m", [text, Parameter("p", 8)])])
    prompt = Prompt("s", [Select("m", {"p": char})], [User(text), text])
    plan = layout_schema(schema, encode).plan(prompt)
    assert ord(char) in plan.modules[1].tokens and plan.parameters[0].tokens == (ord(char),)
    for tree in (schema, prompt):
        with pytest.raises(PMLError, match=f"U\\+{ord(char):04X}.*cannot be written as XML"):
            tree.to_xml()
    xml = f'<schema name="s"><module name="m">{text}</module></schema>'
    with pytest.raises(PMLError, match=f"U\\+{ord(char):04X} cannot appear in XML") as info:
        parse_schema(xml)
    assert (info.value.line, info.value.column) == (1, 41)


@settings(max_examples=80, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=()), max_size=20))
def test_any_text_builds_and_lays_out(text: str) -> None:
    schema = Schema("s", [Module("m", text)])
    layout = layout_schema(schema, encode)
    plan = layout.plan(Prompt("s", [Select("m")], [User(text), text]))
    assert plan.next_position >= 2 * len(text.strip(" \t\r\n") and text)
    if not NOT_XML.search(text):
        assert parse_schema(schema.to_xml()) == schema


SCHEMA = '<schema name="s"><module name="m">héllo</module></schema>'


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_sources_of_any_bytes_like_type_parse(kind: Callable[[bytes], object]) -> None:
    source = kind(SCHEMA.encode())
    assert parse_schema(source) == parse_schema(SCHEMA)  # type: ignore[arg-type]
    prompt = kind(b'<prompt schema="s"><m/><user>hi</user></prompt>')
    assert parse_prompt(prompt).selections == (Select("m"),)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "encoding", ["x-unknown", "rot13", "base64", "utf-32", "idna", "bz2_codec", "mbcs"]
)
def test_unknown_or_unusable_declared_encodings_are_pml_errors(encoding: str) -> None:
    source = f'<?xml version="1.0" encoding="{encoding}"?>{SCHEMA}'.encode()
    with pytest.raises(PMLError, match="malformed XML"):
        parse_schema(source)


def test_a_known_declared_encoding_is_honoured() -> None:
    source = '<?xml version="1.0" encoding="cp1252"?>' + SCHEMA.replace("héllo", "“q”")
    assert parse_schema(source.encode("cp1252")).children[0] == Module("m", "“q”")


def _nested_modules(depth: int) -> Module:
    node = Module("m0", "x")
    for i in range(1, depth):
        node = Module(f"m{i}", node)
    return node


def _nested_roles_and_unions(depth: int) -> Module | Union:
    node: Module | Union = Module("m0", Role("user", "x"))  # depth 2
    for i in range(2, depth):
        node = Union([node]) if i % 2 else Module(f"m{i}", node)
    return node


def _nested_selects(depth: int) -> Select:
    node = Select("m0")
    for i in range(1, depth):
        node = Select(f"m{i}", children=[node])
    return node


@pytest.mark.parametrize("build", [_nested_modules, _nested_roles_and_unions, _nested_selects])
def test_builder_trees_nested_past_the_limit_are_pml_errors(build: Callable[[int], object]) -> None:
    build(MAX_DEPTH - 1)  # the deepest allowed
    with pytest.raises(PMLError, match="nests deeper than"):
        build(MAX_DEPTH)
    with pytest.raises(PMLError, match="nests deeper than"):
        build(50_000)  # far past Python's recursion limit: still a clear error


def test_the_deepest_builder_tree_round_trips_through_xml() -> None:
    schema = Schema("s", [_nested_modules(MAX_DEPTH - 1)])
    assert parse_schema(schema.to_xml(None)) == schema
    layout_schema(schema, encode)
    prompt = Prompt("s", [_nested_selects(MAX_DEPTH - 1)])
    assert parse_prompt(prompt.to_xml(None)) == prompt


def test_special_text_round_trips_and_is_for_schemas_only() -> None:
    schema = Schema("s", [Module("m", [Special("<|im_start|>system\n"), " doc ", Special("\n")])])
    for indent in ("  ", None):
        assert parse_schema(schema.to_xml(indent)) == schema
    assert parse_schema('<schema name="s"><special>&lt;|x|&gt;</special></schema>').children == (
        Special("<|x|>"),
    )
    with pytest.raises(PMLError, match="belongs in schemas"):
        parse_prompt('<prompt schema="s"><special>x</special></prompt>')
    with pytest.raises(PMLError, match="free text"):
        Prompt("s", text=[User([Special("x")])])  # type: ignore[list-item]
    with pytest.raises(PMLError, match="reserved"):
        Module("special")
    with pytest.raises(PMLError, match="holds text only"):
        parse_schema('<schema name="s"><special><module name="m"/></special></schema>')


@pytest.mark.anyio
async def test_prompt_cache_takes_bytes_where_its_parsers_do(tiny: LoadedModel) -> None:
    cache = PromptCache(Engine.from_loaded(tiny, num_pages=64, page_size=4))
    cache.register(bytearray(SCHEMA.encode()))
    prompt = b'<prompt schema="s"><m/><user>hi</user></prompt>'
    assert cache.plan(prompt) == cache.plan(prompt.decode())
    ctx = await cache.context(memoryview(prompt))  # type: ignore[arg-type]
    assert "héllo" in ctx.text
    ctx.release()
    with pytest.raises(PMLError, match="malformed XML"):
        cache.register(b'<?xml version="1.0" encoding="x-unknown"?>' + SCHEMA.encode())
