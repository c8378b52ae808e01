"""Simulating a task's run, as in the AsyncLM paper: what the model writes and where results land.

The model's side is a policy over what it has seen so far: it writes every call it can (the one
with the longest estimated latency first, when the tool docs state estimates), then the next
part of its answer once the results that part needs are in; when neither is possible it writes
`[TRAP][END]` (every remaining call waits on a pending result). The runtime's side follows
`asynclm.agent.run` step by step: a token takes `token_time` seconds; a call starts at its
`[END]` (async), pauses generation until its result is in (sync), or waits for the next trap
(sync-parallel); a result that has arrived is injected after the first token that leaves the
model outside a CML block (the real `CMLParser` decides), all arrived results together, in
arrival order.

The result is a `Turn`: the chunks the model writes and, inside them, the token positions
where interrupts are injected. `render.py` turns a turn into token ids and a loss mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from asynclm.cml.parser import Call as ParsedCall
from asynclm.cml.parser import CMLParser, Malformed, Trap
from asynclm.cml.tokens import format_call, format_interrupt, format_trap
from asynclm.finetune.task import USER, Task

Mode = Literal["async", "sync", "sync-parallel"]
MODES: tuple[Mode, ...] = ("async", "sync", "sync-parallel")
Tokenize = Callable[[str], Sequence[str]]  # text -> the text of each of its tokens, in order
ChunkKind = Literal["call", "trap", "text"]


@dataclass(frozen=True, slots=True)
class Chunk:
    """One thing the model writes: a call block, a trap or a piece of its answer.

    Attributes:
        text: What the model writes (a leading space separates it from what came before).
        kind: "call", "trap" or "text".
        injections: (n, text): after the chunk's first n tokens the runtime injects `text`
            (one or more `[INTR]` blocks).
    """

    text: str
    kind: ChunkKind
    injections: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Turn:
    """A simulated assistant turn of one task in one mode.

    Attributes:
        task_id: The task's id.
        mode: The calling mode.
        chunks: What the model wrote, with the injections; the turn ends with the EOS token.
        seconds: Simulated time from the first token to the end of the turn.
        ids: The call id the model wrote for each call key.
        token_time: Seconds per written token.
    """

    task_id: str
    mode: Mode
    chunks: tuple[Chunk, ...]
    seconds: float
    ids: dict[str, str]
    token_time: float

    @property
    def num_interrupts(self) -> int:
        """Injected `[INTR]` blocks."""
        return sum(text.count("[INTR]") for chunk in self.chunks for _, text in chunk.injections)

    @property
    def num_traps(self) -> int:
        return sum(chunk.kind == "trap" for chunk in self.chunks)

    @property
    def num_calls(self) -> int:
        return sum(chunk.kind == "call" for chunk in self.chunks)

    def written(self) -> str:
        """Everything the model wrote, without the injections."""
        return "".join(chunk.text for chunk in self.chunks)

    def answer(self) -> str:
        """The answer text (what the runtime reports as the run's output)."""
        return "".join(chunk.text for chunk in self.chunks if chunk.kind == "text").strip()


@dataclass(slots=True)
class _Arrival:
    at: float
    order: int
    key: str
    text: str


@dataclass(slots=True)
class _State:
    """What the model has seen (for the policy) and what the runtime holds (for the timing)."""

    ids: dict[str, str] = field(default_factory=dict)  # dispatched call key -> written id
    injected: set[str] = field(default_factory=set)  # keys whose result the model has seen
    parts: int = 0  # answer parts written
    queued: list[str] = field(default_factory=list)  # sync-parallel: written, not started
    flying: list[_Arrival] = field(default_factory=list)  # started (or the user's message)
    arrived: list[_Arrival] = field(default_factory=list)  # in, not yet injected


def next_action(task: Task, state: _State) -> tuple[ChunkKind, str] | None:
    """The policy: ("call", key), ("text", part index), ("trap", "") or None (end the turn)."""
    seen = state.injected
    ready = [call for call in task.calls if call.key not in state.ids and set(call.after) <= seen]
    if ready:
        known = task.latency_stated  # without estimates in the docs: the order asked
        best = max(ready, key=lambda c: (task.estimates[c.name] * known, -task.calls.index(c)))
        return ("call", best.key)
    visible = [i for i, part in enumerate(task.answer) if USER not in part.needs or USER in seen]
    remaining = [i for i in visible if i >= state.parts]
    if remaining and set(task.answer[remaining[0]].needs) <= seen:
        return ("text", str(remaining[0]))
    if set(state.ids) - seen:
        return ("trap", "")
    if remaining:
        raise ValueError(f"task {task.id}: answer part {remaining[0]} waits on nothing pending")
    return None


class _Simulation:
    def __init__(self, task: Task, mode: Mode, token_time: float, tokenize: Tokenize) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if token_time <= 0:
            raise ValueError(f"token_time must be positive, got {token_time}")
        self.task, self.mode, self.token_time, self.tokenize = task, mode, token_time, tokenize
        self.state = _State()
        self.parser = CMLParser()
        self.t = 0.0
        self.order = 0
        if task.interrupt is not None:
            self._fly(USER, task.interrupt.at, format_interrupt(USER, task.interrupt.text))

    def run(self) -> Turn:
        chunks: list[Chunk] = []
        while (action := next_action(self.task, self.state)) is not None:
            text = self._text(*action)
            chunks.append(self._write(" " + text if chunks else text, action))
        self.t += self.token_time  # the EOS token
        if self.state.flying or self.state.arrived:
            raise ValueError(f"task {self.task.id} ({self.mode}): the turn ends with results due")
        return Turn(
            self.task.id, self.mode, tuple(chunks), self.t, dict(self.state.ids), self.token_time
        )

    def _text(self, kind: ChunkKind, arg: str) -> str:
        if kind == "call":
            call = self.task.call(arg)
            self.state.ids[arg] = f"c{len(self.state.ids) + 1}"
            return format_call(self.state.ids[arg], call.name, dict(call.arguments))
        if kind == "text":
            self.state.parts = int(arg) + 1
            return self.task.answer[int(arg)].text
        return format_trap()

    def _write(self, text: str, action: tuple[ChunkKind, str]) -> Chunk:
        injections: list[tuple[int, str]] = []
        for n, piece in enumerate(self.tokenize(text), 1):
            self.t += self.token_time
            for event in self.parser.feed(piece):
                if isinstance(event, ParsedCall):
                    self._on_call(action[1])
                elif isinstance(event, Trap):
                    self._on_trap()
                elif isinstance(event, Malformed):
                    raise ValueError(f"task {self.task.id}: malformed block {text!r}")
            self._collect()
            if self.state.arrived and self.parser.safe_to_inject:
                injections.append((n, self._inject()))
        return Chunk(text, action[0], tuple(injections))

    # ---- the runtime -------------------------------------------------------------------------
    def _on_call(self, key: str) -> None:
        call = self.task.call(key)
        if self.mode == "sync-parallel":
            self.state.queued.append(key)
            return
        self._fly(key, self.t + call.latency, self._interrupt(key))
        if self.mode == "sync":
            self._wait(everything=True)

    def _on_trap(self) -> None:
        for key in self.state.queued:  # sync-parallel: the batch starts now
            self._fly(key, self.t + self.task.call(key).latency, self._interrupt(key))
        self.state.queued.clear()
        self._collect()
        if self.mode != "async" or not self.state.arrived:
            self._wait(everything=self.mode != "async")

    def _wait(self, *, everything: bool) -> None:
        # As the runtime: sync modes wait for every running call; async wakes at the first
        # thing that arrives (a result or the user's message), provided a call is running.
        calls = [a.at for a in self.state.flying if a.key != USER]
        if not calls:
            return
        until = max(calls) if everything else min(a.at for a in self.state.flying)
        self.t = max(self.t, until)
        self._collect()

    def _fly(self, key: str, at: float, text: str) -> None:
        self.state.flying.append(_Arrival(at, self.order, key, text))
        self.order += 1

    def _collect(self) -> None:
        done = sorted(
            (a for a in self.state.flying if a.at <= self.t), key=lambda a: (a.at, a.order)
        )
        self.state.flying = [a for a in self.state.flying if a.at > self.t]
        self.state.arrived += done

    def _inject(self) -> str:
        text = "".join(a.text for a in self.state.arrived)
        self.state.injected |= {a.key for a in self.state.arrived}
        self.state.arrived = []
        return text

    def _interrupt(self, key: str) -> str:
        return format_interrupt(self.state.ids[key], self.task.call(key).result)


def simulate(task: Task, mode: Mode, *, token_time: float, tokenize: Tokenize) -> Turn:
    """Simulates the model's turn on `task` in `mode`.

    Args:
        task: The task.
        mode: "async", "sync" or "sync-parallel".
        token_time: Seconds the model takes per token (the AsyncLM recipe draws 5-30 ms).
        tokenize: The text of each token of a chunk, as the runtime streams it.

    Returns:
        The turn.

    Raises:
        ValueError: If the task cannot be run to its end (e.g. its user message would arrive
            after the answer).
    """
    return _Simulation(task, mode, token_time, tokenize).run()
