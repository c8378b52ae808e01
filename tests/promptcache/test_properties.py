"""Property tests over random schemas: XML round trip and layout invariants."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asynclm.promptcache import (
    Module,
    Node,
    Parameter,
    Prompt,
    Role,
    Schema,
    SchemaLayout,
    Select,
    Union,
    layout_schema,
    parse_prompt,
    parse_schema,
)

# Any XML-safe character: printable BMP up to U+2FFF plus the XML whitespace characters.
TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FFF) | st.sampled_from("\t\n\r "),
    max_size=6,
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def encode(text: str, *, special: bool = False) -> list[int]:
    return [ord(c) for c in text]


@st.composite
def nodes(draw: st.DrawFn, depth: int, in_module: bool, in_role: bool, names: Iterator[int]):
    kinds = ["text"]
    if depth > 0:
        kinds += ["module", "union"]
    if in_module:
        kinds.append("parameter")
    if not in_role:
        kinds.append("role")
    out: list[Node] = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(kinds))
        if kind == "text":
            out.append(draw(TEXT))
        elif kind == "parameter":
            out.append(Parameter(f"p{next(names)}", draw(st.integers(1, 4))))
        elif kind == "module":
            out.append(draw(modules(depth - 1, in_role, names)))
        elif kind == "union":
            count = draw(st.integers(1, 3))
            out.append(Union([draw(modules(depth - 1, in_role, names)) for _ in range(count)]))
        else:
            role = draw(st.sampled_from(["system", "user", "assistant"]))
            out.append(Role(role, draw(nodes(depth, in_module, True, names))))
    return out


@st.composite
def modules(draw: st.DrawFn, depth: int, in_role: bool, names: Iterator[int]) -> Module:
    return Module(f"m{next(names)}", draw(nodes(depth, True, in_role, names)))


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    names = iter(range(10**6))  # globally unique names, hence unique in every scope
    encoding = draw(st.sampled_from(["modular", "prefix"]))
    return Schema("s", draw(nodes(3, False, False, names)), encoding)


def scope(children: tuple[Node, ...]) -> Iterator[Node]:
    """Children as one naming scope sees them: through role tags."""
    for node in children:
        if isinstance(node, Role):
            yield from scope(node.children)
        else:
            yield node


def select(data: st.DataObject, module: Module) -> Select:
    args = {
        node.name: data.draw(st.text("abc", max_size=node.length))
        for node in scope(module.children)
        if isinstance(node, Parameter) and data.draw(st.booleans())
    }
    return Select(module.name, args, choose(data, module.children))


def choose(data: st.DataObject, children: tuple[Node, ...]) -> list[Select]:
    """A random valid selection: any modules, at most one member per union."""
    out = []
    for node in scope(children):
        if isinstance(node, Module) and data.draw(st.booleans()):
            out.append(select(data, node))
        elif isinstance(node, Union):
            index = data.draw(st.integers(-1, len(node.members) - 1))
            if index >= 0:
                out.append(select(data, node.members[index]))
    return out


def lay_out(schema: Schema) -> SchemaLayout:
    return layout_schema(schema, encode)


@SETTINGS
@given(schemas(), st.sampled_from(["  ", None]))
def test_schema_xml_round_trip(schema: Schema, indent: str | None) -> None:
    assert parse_schema(schema.to_xml(indent)) == schema


@SETTINGS
@given(schemas())
def test_modules_nest_inside_their_parent(schema: Schema) -> None:
    layout = lay_out(schema)
    assert layout.module(()).length == layout.length
    for module in layout.modules:
        parent = layout.module(module.path[:-1]) if module.path else module
        assert parent.start <= module.start <= module.end <= parent.end
        positions = module.positions
        assert all(a < b for a, b in itertools.pairwise(positions))
        assert all(module.start <= p < module.end for p in positions)
        for slot in module.parameters:
            assert module.start <= slot.start < slot.start + slot.length <= module.end
            assert not set(positions) & set(range(slot.start, slot.start + slot.length))


@SETTINGS
@given(schemas(), st.data())
def test_plan_positions_never_overlap(schema: Schema, data: st.DataObject) -> None:
    layout = lay_out(schema)
    free = data.draw(st.lists(TEXT | st.builds(Role, st.just("user"), TEXT), max_size=3))
    prompt = Prompt("s", choose(data, schema.children), free)
    assert parse_prompt(prompt.to_xml()) == prompt
    plan = layout.plan(prompt)
    tokens, positions = plan.flatten()
    assert len(tokens) == len(positions)
    assert len(set(positions)) == len(positions)
    assert all(p < plan.next_position for p in positions)
    for segment in plan.modules:
        ps = segment.positions
        assert all(a < b for a, b in itertools.pairwise(ps))
    text_positions = [p for segment in plan.text for p in segment.positions]
    assert text_positions == list(range(layout.length, plan.next_position))
    assert plan.modules[0].path == ()
    assert len({s.path for s in plan.modules}) == len(plan.modules)
