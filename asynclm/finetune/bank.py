"""The template bank: synthetic tool tasks of every kind, composed from the catalog's families.

Each task offers a few tools (the ones it needs plus, often, one or two it does not), states a
random estimated latency for each (1 ms - 1 s, log-uniform), and has an answer that copies the
values its calls return. `bank_tasks(n, seed=...)` is deterministic; `held_out=True` draws only
from the held-out families (tools never seen in training), for evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from random import Random
from types import SimpleNamespace
from typing import Any

from asynclm.finetune import pools
from asynclm.finetune.bfcl_live import HARNESS_INSTRUCTIONS
from asynclm.finetune.catalog import CHAINS, TRAINING
from asynclm.finetune.family import Chain, Family, fill, placeholders, spoken
from asynclm.finetune.held_out import HELD_OUT, HELD_OUT_CHAINS
from asynclm.finetune.task import (
    USER,
    AnswerPart,
    Call,
    Task,
    UserMessage,
    draw_estimate,
    draw_latency,
)
from asynclm.tooling import DEFAULT_MAX_RESULT_CHARS, format_result

DEFAULT_MIX: Mapping[str, float] = {
    "single": 0.14,
    "parallel": 0.22,
    "chain": 0.14,
    "multistep": 0.12,
    "no_call": 0.08,
    "irrelevant": 0.08,
    "error": 0.10,
    "user_interrupt": 0.12,
    "repeated": 0.0,  # opt-in (`--mix repeated=W`): the default data stay as they were
}
INSTRUCTIONS = (
    HARNESS_INSTRUCTIONS,
    "Answer briefly.",
    "You are a helpful assistant.",
    "You are a travel assistant. Be concise.",
    "Reply in one or two sentences.",
    "You help users with everyday questions.",
)
NO_CALL = (
    ("Hi!", "Hello! How can I help you today?"),
    ("Thanks, that's all.", "You're welcome!"),
    ("What can you do?", "I can look things up and act for you with the tools I have."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("How many days are in a week?", "A week has 7 days."),
    ("What color is the sky on a clear day?", "On a clear day the sky is blue."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("How many minutes are in an hour?", "An hour has 60 minutes."),
    ("What is the boiling point of water in Celsius?", "Water boils at 100 degrees Celsius."),
    ("Say hello in Spanish.", "Hola!"),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
)


@dataclass(frozen=True, slots=True)
class _Request:
    """One call of a task being built, with its phrase and its answer sentence."""

    family: Family
    phrase: str
    template: str
    args: dict[str, Any]
    value: Any
    say: str


@dataclass(frozen=True, slots=True)
class _Session:
    """An agent: its tools (in prompt order), their estimates, its instructions.

    Several tasks run on one session, so they share the system prompt (training packs a
    shared prompt once).
    """

    tools: tuple[Family, ...]
    estimates: dict[str, float]
    chains: tuple[Chain, ...]
    instructions: str | None
    example: bool
    latency_stated: bool


class _Builder:
    def __init__(self, rng: Random, held_out: bool) -> None:
        self.rng = rng
        self.families = HELD_OUT if held_out else TRAINING
        self.all_chains = HELD_OUT_CHAINS if held_out else CHAINS
        self.by_name = {f.name: f for f in self.families}

    # ---- sessions ------------------------------------------------------------------------------
    def session(self) -> _Session:
        rng = self.rng
        tools: dict[str, Family] = {}
        if rng.random() < 0.6:
            chain = rng.choice(self.all_chains)
            tools |= {n: self.by_name[n] for n in (chain.first, chain.then)}
        size = rng.randint(max(2, len(tools)), 4)
        for fam in rng.sample(self.families, len(self.families)):
            if len(tools) >= size:
                break
            tools.setdefault(fam.name, fam)
        offered = list(tools.values())
        rng.shuffle(offered)
        chains = tuple(c for c in self.all_chains if c.first in tools and c.then in tools)
        return _Session(
            tools=tuple(offered),
            estimates={f.name: draw_estimate(rng) for f in offered},
            chains=chains,
            instructions=rng.choice(INSTRUCTIONS) if rng.random() < 0.3 else None,
            example=rng.random() < 0.5,
            latency_stated=rng.random() < 0.75,
        )

    # ---- pieces --------------------------------------------------------------------------------
    def request(self, fam: Family, avoid: Sequence[_Request] = ()) -> _Request:
        """A request to `fam`, unlike those in `avoid` (a task never asks the same thing twice)."""
        taken = {_identity(r.family, r.args) for r in avoid}
        for _ in range(10):
            template, args = fam.draw(self.rng)
            if _identity(fam, args) not in taken:
                break
        value, say = fam.outcome(self.rng, args)
        return _Request(fam, fam.phrase(template, args), template, args, value, say)

    def latency(self, s: _Session, name: str) -> float:
        return draw_latency(self.rng, s.estimates[name])

    def call(self, s: _Session, key: str, req: _Request, after: tuple[str, ...] = ()) -> Call:
        return Call(
            key,
            req.family.name,
            req.args,
            _text(req.value),
            self.latency(s, req.family.name),
            after,
        )

    def task(
        self,
        s: _Session,
        kind: str,
        index: int,
        prompt: str,
        calls,
        answer,
        interrupt: UserMessage | None = None,
    ) -> Task:
        return Task(
            id=f"bank-{kind}-{index}",
            kind=kind,
            source="bank",
            prompt=prompt,
            tools=tuple(f.doc() for f in s.tools),
            estimates=dict(s.estimates),
            calls=tuple(calls),
            answer=tuple(answer),
            instructions=s.instructions,
            interrupt=interrupt,
            example=s.example,
            latency_stated=s.latency_stated,
        )

    # ---- kinds ---------------------------------------------------------------------------------
    def calls_task(self, s: _Session, kind: str, index: int, n: int, *, fail: bool = False) -> Task:
        reqs = self._requests(s, n)
        calls = [self.call(s, f"k{i + 1}", r) for i, r in enumerate(reqs)]
        answer = [AnswerPart(r.say, (c.key,)) for r, c in zip(reqs, calls, strict=True)]
        if fail:
            i = self.rng.randrange(n)
            calls[i], answer[i] = self._failed(reqs[i], calls[i])
        return self.task(s, kind, index, compose(self.rng, reqs), calls, answer)

    def chain_task(self, s: _Session, kind: str, index: int) -> Task:
        """One chain ("chain"), or chains and independent calls side by side ("multistep")."""
        if not s.chains:
            return self.calls_task(s, "parallel", index, self.rng.randint(2, 3))
        chains = [self.rng.choice(s.chains)] if kind == "chain" else list(s.chains)
        calls: list[Call] = []
        answer: list[AnswerPart] = []
        phrases: list[tuple[str, bool]] = []
        for chain in chains:
            phrase, verb, first, second, says = self._chain(s, chain, len(calls))
            calls += [first, second]
            answer += [AnswerPart(says[0], (first.key,)), AnswerPart(says[1], (second.key,))]
            phrases.append((phrase, verb))
        linked = {n for c in chains for n in (c.first, c.then)}
        free = [f for f in s.tools if f.name not in linked]
        if kind == "multistep" and len(chains) == 1:
            if not free:
                return self.calls_task(s, "parallel", index, self.rng.randint(2, 3))
            for fam in self.rng.sample(free, self.rng.randint(1, min(2, len(free)))):
                req = self.request(fam)
                calls.append(self.call(s, f"k{len(calls) + 1}", req))
                answer.append(AnswerPart(req.say, (calls[-1].key,)))
                phrases.append((req.phrase, fam.verb))
        return self.task(s, kind, index, join_requests(self.rng, phrases), calls, answer)

    def _chain(self, s: _Session, chain: Chain, start: int):
        first_fam, then_fam = self.by_name[chain.first], self.by_name[chain.then]
        ask = self.rng.choice(chain.asks)
        _, a_args = first_fam.draw(self.rng, _only(first_fam, ask, "a"))
        a_value, a_say = first_fam.outcome(self.rng, a_args, plain_p=0.0)
        link = a_value[chain.output]
        link = link[0] if isinstance(link, list) else link
        _, b_args = then_fam.draw(self.rng, _only(then_fam, ask, "b"))
        b_args = {**b_args, **chain.fixed, chain.param: link}
        b_args = {k: b_args[k] for k in then_fam.params if k in b_args}
        b_value, b_say = then_fam.outcome(self.rng, b_args)
        phrase = ask.format(
            a=SimpleNamespace(**_spoken(a_args)), b=SimpleNamespace(**_spoken(b_args))
        )
        k1, k2 = f"k{start + 1}", f"k{start + 2}"
        first = Call(k1, first_fam.name, a_args, _text(a_value), self.latency(s, first_fam.name))
        second = Call(
            k2, then_fam.name, b_args, _text(b_value), self.latency(s, then_fam.name), (k1,)
        )
        return phrase, then_fam.verb, first, second, (a_say, b_say)

    def repeated_task(self, s: _Session, index: int, n: int) -> Task:
        """One tool asked for several values of one argument in one list ("the weather in
        Paris, Tokyo and London"): one call per value, as BFCL's parallel questions ask."""
        options = [(f, ask) for f in s.tools for ask in f.asks if _mergeable(ask)]
        if not options:
            return self.calls_task(s, "parallel", index, n)
        fam, ask = self.rng.choice(options)
        reqs: list[_Request] = []
        taken: set[str] = set()
        for _ in range(4 * n):
            _, args = fam.draw(self.rng, ask)
            if len(reqs) == n or _identity(fam, args) in taken:
                continue
            taken.add(_identity(fam, args))
            value, say = fam.outcome(self.rng, args)
            reqs.append(_Request(fam, fam.phrase(ask, args), ask, args, value, say))
        if len(reqs) < 2:
            return self.calls_task(s, "parallel", index, n)
        calls = [self.call(s, f"k{i + 1}", r) for i, r in enumerate(reqs)]
        answer = [AnswerPart(r.say, (c.key,)) for r, c in zip(reqs, calls, strict=True)]
        return self.task(s, "repeated", index, compose(self.rng, reqs), calls, answer)

    def no_call_task(self, s: _Session, index: int) -> Task:
        question, reply = self.rng.choice(NO_CALL)
        return self.task(s, "no_call", index, question, [], [AnswerPart(reply)])

    def irrelevant_task(self, s: _Session, index: int) -> Task:
        offered = {f.name for f in s.tools}
        req = self.request(self.rng.choice([f for f in self.families if f.name not in offered]))
        reply = self.rng.choice(
            ("Sorry, none of my tools can {x}.", "I can't {x} with the tools I have.")
            if req.family.verb
            else ("Sorry, I have no tool to look up {x}.", "None of my tools can tell me {x}.")
        ).format(x=req.phrase)
        return self.task(s, "irrelevant", index, compose(self.rng, [req]), [], [AnswerPart(reply)])

    def interrupt_task(self, s: _Session, index: int) -> Task:
        reqs = self._requests(s, self.rng.randint(1, 3))
        calls = [self.call(s, f"k{i + 1}", r) for i, r in enumerate(reqs)]
        answer = [AnswerPart(r.say, (c.key,)) for r, c in zip(reqs, calls, strict=True)]
        extra = self.request(self.rng.choice(s.tools), avoid=reqs)
        calls.append(self.call(s, f"k{len(calls) + 1}", extra, after=(USER,)))
        answer.append(AnswerPart(extra.say, (calls[-1].key, USER)))
        text = ("Please also {x}." if extra.family.verb else "Also, what about {x}?").format(
            x=extra.phrase
        )
        message = UserMessage(text, at=round(self.rng.uniform(0.02, 0.25), 3))
        return self.task(
            s, "user_interrupt", index, compose(self.rng, reqs), calls, answer, message
        )

    def _requests(self, s: _Session, n: int) -> list[_Request]:
        kinds = self.rng.sample(s.tools, self.rng.randint(1, min(n, len(s.tools))))
        reqs: list[_Request] = []
        for i in range(n):
            reqs.append(self.request(kinds[i % len(kinds)], avoid=reqs))
        return reqs

    def _failed(self, req: _Request, call: Call) -> tuple[Call, AnswerPart]:
        error = self.rng.choice(req.family.errors or pools.ERRORS)
        text = ("I could not {x}: {e}." if req.family.verb else "I could not get {x}: {e}.").format(
            x=req.phrase, e=error
        )
        failed = Call(
            call.key, call.name, call.arguments, f"error: {error}", call.latency, ok=False
        )
        return failed, AnswerPart(text, (call.key,))


def _identity(fam: Family, args: Mapping[str, Any]) -> str:
    return json.dumps([fam.name, args], sort_keys=True, default=str)


def _only(fam: Family, ask: str, prefix: str) -> str:
    """A phrase naming the required arguments plus those `ask` names with `prefix.`."""
    named = {p.split(".", 1)[1] for p in _dotted(ask) if p.startswith(prefix + ".")}
    names = [n for n, p in fam.params.items() if p.required or n in named]
    return " ".join("{" + n + "}" for n in names)


def _dotted(template: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _spoken(args: Mapping[str, Any]) -> dict[str, Any]:
    return {k: spoken(v) for k, v in args.items()}


def _text(value: Any) -> str:
    return format_result(value, DEFAULT_MAX_RESULT_CHARS)


def compose(rng: Random, reqs: Sequence[_Request]) -> str:
    """A user message asking for every request (same-template lists merged: "in A and B")."""
    merged: dict[str, list[_Request]] = {}
    for req in reqs:
        key = req.template if _mergeable(req.template) else f"{req.template}#{id(req)}"
        merged.setdefault(key, []).append(req)
    phrases = []
    for group in merged.values():
        first = group[0]
        if len(group) == 1:
            phrases.append((first.phrase, first.family.verb))
            continue
        (name,) = placeholders(first.template)
        values = [r.args[name] for r in group]
        phrases.append((fill(first.template, {name: values}), first.family.verb))
    return join_requests(rng, phrases)


def _mergeable(template: str) -> bool:
    names = _dotted(template)
    return len(names) == 1 and template.endswith("{" + names[0] + "}") and "=" not in names[0]


def join_requests(rng: Random, phrases: Sequence[tuple[str, bool]]) -> str:
    """One natural sentence (or two) asking for several things."""
    verbs = [p for p, is_verb in phrases if is_verb]
    nouns = [p for p, is_verb in phrases if not is_verb]
    parts = []
    if verbs:
        form = rng.choice(("Please {x}.", "Can you {x}?", "I need you to {x}.", "{X}, please."))
        parts.append(_form(form, spoken(verbs)))
    if nouns:
        forms: tuple[str, ...] = ("Tell me {x}.", "Can you check {x}?", "I'd like to know {x}.")
        if all(n.startswith("the ") for n in nouns):
            forms += ("What is {x}?", "Please look up {x}.", "{X}?")
        if verbs:
            forms = ("Also, tell me {x}.", "And check {x}.")
        parts.append(_form(rng.choice(forms), spoken(nouns)))
    return " ".join(parts)


def _form(form: str, x: str) -> str:
    return form.format(x=x, X=x[:1].upper() + x[1:])


def bank_tasks(
    n: int,
    *,
    seed: int,
    held_out: bool = False,
    mix: Mapping[str, float] | None = None,
    per_session: tuple[int, int] = (2, 4),
) -> list[Task]:
    """`n` synthetic tasks, kinds drawn from `mix` (default `DEFAULT_MIX`).

    Tasks come in sessions of `per_session` tasks that share one agent (tools, estimates,
    instructions), as users of one agent do; training then packs their prompt once.

    Args:
        n: How many tasks.
        seed: Seed of everything drawn (the same seed gives the same tasks).
        held_out: Use only held-out tool families (evaluation on tools never seen).
        mix: Weight of each task kind.
        per_session: Fewest and most tasks per session.

    Returns:
        The tasks, ids `bank-<kind>-<i>` (`eval-...` when held out).
    """
    mix = dict(mix or DEFAULT_MIX)
    unknown = set(mix) - set(DEFAULT_MIX)
    if unknown:
        raise ValueError(f"unknown task kinds {sorted(unknown)}; known: {sorted(DEFAULT_MIX)}")
    rng = Random(seed)
    builder = _Builder(rng, held_out)
    tasks: list[Task] = []
    while len(tasks) < n:
        session = builder.session()
        for _ in range(min(rng.randint(*per_session), n - len(tasks))):
            kind = rng.choices(list(mix), weights=list(mix.values()))[0]
            tasks.append(_make(builder, session, kind, len(tasks)))
    if held_out:
        tasks = [_renamed(t, "eval") for t in tasks]
    return tasks


def _make(b: _Builder, s: _Session, kind: str, i: int) -> Task:
    if kind == "single":
        return b.calls_task(s, kind, i, 1)
    if kind == "parallel":
        return b.calls_task(s, kind, i, b.rng.randint(2, 4))
    if kind == "repeated":
        return b.repeated_task(s, i, b.rng.randint(2, 4))
    if kind == "error":
        return b.calls_task(s, kind, i, b.rng.randint(1, 3), fail=True)
    if kind in ("chain", "multistep"):
        return b.chain_task(s, kind, i)
    if kind == "no_call":
        return b.no_call_task(s, i)
    if kind == "irrelevant":
        return b.irrelevant_task(s, i)
    return b.interrupt_task(s, i)


def _renamed(task: Task, prefix: str) -> Task:
    from dataclasses import replace

    return replace(task, id=task.id.replace("bank-", f"{prefix}-", 1), source="held_out")
