"""Parsing PML safely: structure, error messages with locations, and hostile input."""

from __future__ import annotations

import pytest

from asynclm.promptcache import (
    Module,
    Parameter,
    PMLError,
    Prompt,
    Role,
    Schema,
    Select,
    parse_pml,
    parse_prompt,
    parse_schema,
)

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<schema name="s"><module name="m">&lol9;</module></schema>"""


def test_parse_schema_structure() -> None:
    schema = parse_schema(
        b'<?xml version="1.0" encoding="utf-8"?>\n'
        b'<schema name="s" encoding="prefix"><!-- a comment -->intro '
        b'<module name="a">A<module name="b">B <parameter name="p" len="3"/></module></module>'
        b"<user><![CDATA[x < y]]></user></schema>"
    )
    assert schema == Schema(
        "s",
        [
            "intro ",
            Module("a", ["A", Module("b", ["B ", Parameter("p", 3)])]),
            Role("user", "x < y"),
        ],
        encoding="prefix",
    )


def test_character_references_are_fine() -> None:
    assert parse_schema('<schema name="s">&lt;&amp;&#65;&#x42;</schema>').children == ("<&AB",)


def test_parse_prompt_structure() -> None:
    prompt = parse_prompt(
        """<prompt schema="travel">
             <doc-tokyo/>
             <a x="1"><b y="2"/></a>
             Plain text.
             <user>What should I see?</user>
           </prompt>"""
    )
    assert prompt.schema == "travel"
    assert prompt.selections == (
        Select("doc-tokyo"),
        Select("a", {"x": "1"}, [Select("b", {"y": "2"})]),
    )
    assert prompt.text[0].strip() == "Plain text."
    assert prompt.text[1] == Role("user", "What should I see?")
    assert prompt.selections[0].location == (2, 14)


def test_parse_pml_dispatches_on_root() -> None:
    assert isinstance(parse_pml('<schema name="s"/>'), Schema)
    assert isinstance(parse_pml('<prompt schema="s"/>'), Prompt)
    with pytest.raises(PMLError, match="expected a <schema> or <prompt>"):
        parse_pml("<other/>")


def test_billion_laughs_is_refused() -> None:
    with pytest.raises(PMLError, match="DOCTYPE") as info:
        parse_schema(BILLION_LAUGHS)
    assert info.value.line == 2


@pytest.mark.parametrize(
    "xml",
    [
        '<!DOCTYPE schema SYSTEM "http://example.com/x.dtd"><schema name="s"/>',
        '<!DOCTYPE s [<!ENTITY e SYSTEM "file:///etc/passwd">]><schema name="s">&e;</schema>',
        '<!DOCTYPE s [<!ENTITY % p SYSTEM "http://x/p">%p;]><schema name="s"/>',
        "<!DOCTYPE s><schema name='s'/>",
    ],
)
def test_any_doctype_is_refused(xml: str) -> None:
    with pytest.raises(PMLError, match="DOCTYPE"):
        parse_schema(xml)


def test_undefined_entity_is_malformed() -> None:
    with pytest.raises(PMLError, match="undefined entity"):
        parse_schema('<schema name="s">&nope;</schema>')


def test_oversized_document() -> None:
    big = '<schema name="s"><module name="m">' + "x" * 2_000 + "</module></schema>"
    with pytest.raises(PMLError, match="over the limit of 1000"):
        parse_schema(big, max_bytes=1000)
    assert parse_schema(big, max_bytes=3000).children[0] == Module("m", "x" * 2000)
    with pytest.raises(PMLError, match="over the limit"):
        parse_schema("<schema name='s'>" + "x" * 1_000_001 + "</schema>")


def test_size_counts_utf8_bytes() -> None:
    doc = '<schema name="s">' + "é" * 600 + "</schema>"
    assert len(doc) < 1000
    with pytest.raises(PMLError, match="over the limit"):
        parse_schema(doc, max_bytes=1000)


def test_nesting_depth_cap() -> None:
    deep = '<schema name="s">' + "".join(f'<module name="m{i}">' for i in range(10))
    deep += "</module>" * 10 + "</schema>"
    assert parse_schema(deep, max_depth=11)
    with pytest.raises(PMLError, match="deeper than 10"):
        parse_schema(deep, max_depth=10)


@pytest.mark.parametrize(
    ("xml", "message", "line"),
    [
        ('<schema name="s">\n<module name="m">oops</schema>', "malformed XML: mismatched tag", 2),
        ("", "malformed XML", 1),
        ("<schema name='s'/><extra/>", "junk after document element", 1),
        ('<schema name="s">\n <tool/></schema>', "unknown element <tool>", 2),
        ("<schema>\n</schema>", "missing attribute 'name'", 1),
        ('<schema name="s" colour="red"/>', "unknown attribute 'colour'", 1),
        ('<schema name="s" encoding="fast"/>', "encoding must be", 1),
        ('<schema name="s">\n\n<parameter name="p" len="2"/></schema>', "outside any module", 1),
        (
            '<schema name="s"><module name="m">\n<parameter name="p"/></module></schema>',
            "missing attribute 'len'",
            2,
        ),
        (
            '<schema name="s"><module name="m"><parameter name="p" len="-1"/></module></schema>',
            "positive integer",
            1,
        ),
        (
            '<schema name="s"><module name="m"><parameter name="p" len="0"/></module></schema>',
            "positive integer",
            1,
        ),
        (
            '<schema name="s"><module name="m"><parameter name="p" len="2">x</parameter>'
            "</module></schema>",
            "text is not allowed",
            1,
        ),
        (
            '<schema name="s">\n<module name="a"/>\n<module name="a"/></schema>',
            "duplicate module name 'a'",
            1,
        ),
        (
            '<schema name="s"><union>\n<module name="a"/>text</union></schema>',
            "text is not allowed",
            1,
        ),
        (
            '<schema name="s"><union><system>x</system></union></schema>',
            "members must be modules",
            1,
        ),
        ('<schema name="s"><union/></schema>', "at least one member", 1),
        ('<schema name="s"><user>\n<system>x</system></user></schema>', "may not nest", 1),
        ('<schema name="s"><module name="bad name"/></schema>', "invalid module name", 1),
        ('<schema name="s"><module name="x:y"/></schema>', "invalid module name", 1),
        ('<prompt schema="s"/>', "expected a <schema> root", 1),
    ],
)
def test_schema_errors(xml: str, message: str, line: int) -> None:
    with pytest.raises(PMLError, match=message) as info:
        parse_schema(xml)
    assert info.value.line == line


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ('<prompt schema="s"><user>hi</user>\n<a/></prompt>', "after free text"),
        ('<prompt schema="s">text <a/></prompt>', "after free text"),
        ('<prompt schema="s"><user><a/></user></prompt>', "free text only"),
        ('<prompt schema="s"><a>text</a></prompt>', "text is not allowed"),
        ('<prompt schema="s"><user role="x">hi</user></prompt>', "unknown attribute"),
        ("<prompt/>", "missing attribute 'schema'"),
        ('<prompt schema="s"><a p="\x01"/></prompt>', "U\\+0001 cannot appear in XML"),
        ('<schema name="s"/>', "expected a <prompt> root"),
    ],
)
def test_prompt_errors(xml: str, message: str) -> None:
    with pytest.raises(PMLError, match=message):
        parse_prompt(xml)


def test_error_location_points_at_element() -> None:
    xml = '<schema name="s">\n  <module name="m">\n    <bogus/>\n  </module>\n</schema>'
    with pytest.raises(PMLError) as info:
        parse_schema(xml)
    assert (info.value.line, info.value.column) == (3, 5)
    assert "line 3, column 5" in str(info.value)


def test_rejects_non_text_source() -> None:
    with pytest.raises(PMLError, match="str or bytes"):
        parse_schema(123)  # type: ignore[arg-type]


def test_bad_byte_encoding() -> None:
    with pytest.raises(PMLError, match="malformed XML"):
        parse_schema(b'<schema name="s">\xff\xfe</schema>')
