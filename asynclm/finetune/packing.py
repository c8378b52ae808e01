"""Prefix-tree packing: sequences that share a beginning are stored and computed once.

The three modes of a task share its prompt and the start of its turn; the tasks of one agent
share its system prompt. Packing merges the sequences of a row into a token trie: each token
appears once, sits at its depth as position id, and attends only to its own ancestors, so
every token sees exactly the context it would see alone (a 4D attention mask built from the
row's segments) while shared prefixes cost one forward. A token's training target is the token
the model writes after it; at a branch at most one child is written by the model (the others
are injected interrupts, which carry no loss), so each token has at most one target. A sequence
that would write a different token after a shared prefix goes to another row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from asynclm.finetune.render import Example

IGNORE = -100


@dataclass(frozen=True, slots=True)
class PackedRow:
    """One training row: a token trie laid out depth-first.

    Attributes:
        input_ids: The trie's tokens, depth-first.
        targets: For each token, the token the model writes next, or `IGNORE`.
        positions: Each token's depth (its position id when alone).
        segments: `(start, end, hang)`: a run of tokens each the child of the one before;
            `hang` is the index of the first token's parent (-1 at the root).
        num_examples: Sequences merged into the row.
    """

    input_ids: tuple[int, ...]
    targets: tuple[int, ...]
    positions: tuple[int, ...]
    segments: tuple[tuple[int, int, int], ...]
    num_examples: int

    def visible(self, segment: int) -> list[tuple[int, int]]:
        """Index ranges `[a, b)` the segment's tokens see besides their own run (ancestors)."""
        return ancestor_ranges(self.segments, segment)


def ancestor_ranges(segments: Sequence[Sequence[int]], segment: int) -> list[tuple[int, int]]:
    """Index ranges `[a, b)` that the tokens of `segments[segment]` see besides their own run:
    the ancestors' runs, nearest first (each cut where the path leaves it)."""
    by_start = {int(start): i for i, (start, _, _) in enumerate(segments)}
    ranges = []
    hang = int(segments[segment][2])
    while hang >= 0:
        owner = max(s for s in by_start if s <= hang)
        ranges.append((owner, hang + 1))
        hang = int(segments[by_start[owner]][2])
    return ranges


@dataclass(slots=True)
class _Node:
    token: int
    parent: int
    children: dict[int, int] = field(default_factory=dict)
    target: int = IGNORE


class _Trie:
    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        self.roots: dict[int, int] = {}
        self.count = 0

    def new_nodes(self, ids: Sequence[int]) -> int:
        """How many nodes adding `ids` would create."""
        children, depth = self.roots, 0
        while depth < len(ids) and ids[depth] in children:
            children = self.nodes[children[ids[depth]]].children
            depth += 1
        return len(ids) - depth

    def conflicts(self, example: Example) -> bool:
        """Whether `example` writes a different token after a prefix some sequence shares."""
        children, parent = self.roots, -1
        for token, written in zip(example.input_ids, example.loss, strict=True):
            if written and parent >= 0 and self.nodes[parent].target not in (IGNORE, token):
                return True
            node = children.get(token)
            if node is None:
                return False
            parent, children = node, self.nodes[node].children
        return False

    def add(self, example: Example) -> None:
        parent, children = -1, self.roots
        for token, written in zip(example.input_ids, example.loss, strict=True):
            node = children.get(token)
            if node is None:
                node = children[token] = len(self.nodes)
                self.nodes.append(_Node(token, parent))
            if written and parent >= 0:
                self.nodes[parent].target = token
            parent, children = node, self.nodes[node].children
        self.count += 1

    def row(self) -> PackedRow:
        order: list[int] = []
        depth: dict[int, int] = {}
        stack = [(root, 0) for root in reversed(self.roots.values())]
        while stack:
            node, d = stack.pop()
            order.append(node)
            depth[node] = d
            stack += [(c, d + 1) for c in reversed(self.nodes[node].children.values())]
        index = {node: i for i, node in enumerate(order)}
        segments = []
        for i, node in enumerate(order):
            parent = self.nodes[node].parent
            if i == 0 or parent != order[i - 1]:
                segments.append([i, i + 1, index[parent] if parent >= 0 else -1])
            else:
                segments[-1][1] = i + 1
        return PackedRow(
            tuple(self.nodes[n].token for n in order),
            tuple(self.nodes[n].target for n in order),
            tuple(depth[n] for n in order),
            tuple((a, b, h) for a, b, h in segments),
            self.count,
        )


def pack(examples: Sequence[Example], max_tokens: int) -> tuple[list[PackedRow], int]:
    """Packs examples into prefix-tree rows of at most `max_tokens` tokens.

    Examples are sorted so that those sharing a prefix share a row.

    Args:
        examples: The training sequences.
        max_tokens: The longest row.

    Returns:
        The rows, and how many examples were dropped for being longer than `max_tokens`.
    """
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be >= 2, got {max_tokens}")
    rows: list[PackedRow] = []
    trie, dropped = _Trie(), 0
    for example in sorted(examples, key=lambda e: e.input_ids):
        if len(example.input_ids) > max_tokens:
            dropped += 1
            continue
        full = len(trie.nodes) + trie.new_nodes(example.input_ids) > max_tokens
        if full or trie.conflicts(example):  # a sequence that disagrees gets a row of its own
            rows.append(trie.row())
            trie = _Trie()
        trie.add(example)
    if trie.count:
        rows.append(trie.row())
    return rows, dropped
