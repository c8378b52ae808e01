"""Fuzzing the streaming parser: random and adversarial streams, split anywhere.

Each hypothesis example draws a few structured streams (which hypothesis can shrink) and a
seed for a batch of cheap random ones, so one fast run feeds well over 10,000 streams.
"""

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from asynclm.cml import (
    MARKERS,
    BlockStart,
    Call,
    CMLParser,
    Malformed,
    State,
    Text,
    Trap,
    format_call,
    format_trap,
)
from tests.cml.test_parser import merged

EXAMPLES = 400
DRAWN_PER_EXAMPLE = 2
RANDOM_PER_EXAMPLE = 24  # 400 * 26 = 10,400 streams, each fed whole and re-split

FRAGMENTS = [
    *MARKERS,
    *(marker[:cut] for marker in MARKERS for cut in range(1, len(marker))),
    *(marker[cut:] for marker in MARKERS for cut in range(1, len(marker))),
    " ", "\n", "w1", "call_1", "1bad", "for", "f(x=1)", "g(y='[END]')", "é", "中", "😀",
    "\x00", "\ud800", "[[", "]]", "[CAL L]", "[end]",
]  # fmt: skip

call_parts = st.tuples(
    st.sampled_from(["f", "math.factorial"]),
    st.dictionaries(st.sampled_from(["x", "y"]), st.text(max_size=8) | st.integers()),
)
plain_text = st.text(st.characters(blacklist_characters="["), max_size=10)  # never a marker
valid_parts = st.one_of(call_parts, st.just(format_trap()), st.just("[CALL] f() [END]"), plain_text)
valid_blocks = st.lists(valid_parts, max_size=6).map(
    lambda parts: [
        format_call(f"c{i}", *part) if isinstance(part, tuple) else part
        for i, part in enumerate(parts)
    ]
)

pieces = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.text(max_size=8),
    st.integers(4_000, 6_000).map(lambda n: "y" * n),  # huge bodies
)

streams = st.one_of(
    st.lists(pieces, max_size=20),  # adversarial fragments
    valid_blocks.map(lambda blocks: ["".join(blocks)]),  # valid CML
)


def split_randomly(stream, rnd):
    """`stream` cut into pieces at random positions (a few, or nearly every character)."""
    text = "".join(stream)
    if not text:
        return [text]
    cuts = sorted(rnd.sample(range(len(text) + 1), rnd.randint(0, min(len(text), 8))))
    bounds = [0, *cuts, len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def random_stream(rnd):
    """A cheap random stream: fragments, random characters, valid blocks and huge runs."""
    stream = []
    for _ in range(rnd.randint(0, 16)):
        roll = rnd.random()
        if roll < 0.6:
            stream.append(rnd.choice(FRAGMENTS))
        elif roll < 0.8:
            stream.append("".join(chr(rnd.randint(1, 0x2FFF)) for _ in range(rnd.randint(1, 6))))
        elif roll < 0.97:
            stream.append(format_call(f"r{len(stream)}", "f", {"x": rnd.choice(FRAGMENTS)}))
        else:
            stream.append(rnd.choice("y[ ") * rnd.randint(3_000, 6_000))
    return stream


def run(pieces_):
    parser = CMLParser()
    events = []
    for piece in pieces_:
        events += parser.feed(piece)
        check_flags(parser)
    events += parser.close()
    assert parser.state is State.NORMAL and parser.safe_to_inject
    return events


def check_flags(parser):
    assert parser.in_block == (parser.state is not State.NORMAL)
    if parser.safe_to_inject:
        assert not parser.in_block


def check_events(events, text):
    assert "".join(event.raw for event in events) == text
    open_block = False
    for event in events:
        if isinstance(event, BlockStart):
            assert not open_block
            open_block = True
        elif isinstance(event, (Call, Trap)):
            assert open_block
            open_block = False
        elif isinstance(event, Malformed):
            assert event.reason
            open_block = False
        else:
            assert isinstance(event, Text) and event.raw and not open_block
            assert not any(marker in event.raw for marker in MARKERS)
    assert not open_block


def check_stream(stream, rnd):
    """Fed as drawn and re-split at random: no exception, raw kept, same events."""
    events = run(stream)
    check_events(events, "".join(stream))
    assert merged(run(split_randomly(stream, rnd))) == merged(events)


def test_fuzz_streams():
    fed = 0

    @settings(max_examples=EXAMPLES, database=None, deadline=None)
    @given(st.lists(streams, min_size=DRAWN_PER_EXAMPLE, max_size=DRAWN_PER_EXAMPLE),
           st.integers(0, 2**32))  # fmt: skip
    def check(batch, seed):
        nonlocal fed
        rnd = random.Random(seed)
        for stream in batch:
            check_stream(stream, rnd)
            fed += 1
        for _ in range(RANDOM_PER_EXAMPLE):
            check_stream(random_stream(rnd), rnd)
            fed += 1

    check()
    assert fed >= 10_000


def test_fuzz_valid_cml_gives_only_calls_and_traps():
    @settings(max_examples=200, database=None, deadline=None)
    @given(valid_blocks, st.integers(0, 2**32))
    def check(blocks, seed):
        text = "".join(blocks)
        events = run(split_randomly([text], random.Random(seed)))
        assert not any(isinstance(event, Malformed) for event in events)
        expected = sum(block.startswith(("[CALL]", "[TRAP]")) for block in blocks)
        assert sum(isinstance(event, (Call, Trap)) for event in events) == expected

    check()
