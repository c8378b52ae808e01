"""A generation drives its context through `TokenStream` alone: scripted logits, no engine."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from asynclm.engine.generation import Generation
from asynclm.engine.loader import LoadedModel
from asynclm.engine.sampling import Sampler

pytestmark = pytest.mark.anyio


class Script:
    """A token stream whose next token is scripted; it records what the generation appends."""

    def __init__(self, tokens: list[int], vocab: int) -> None:
        self.script = list(tokens)
        self.vocab = vocab
        self.appended: list[int | str] = []

    async def next_logits(self) -> torch.Tensor:
        logits = torch.zeros(1, self.vocab)
        logits[0, self.script.pop(0)] = 1.0
        return logits

    def append(self, content: str | Sequence[int], *, special: bool = False) -> None:
        self.appended += [content] if isinstance(content, str) else list(content)


def _generation(tiny: LoadedModel, stream: Script, **kwargs) -> Generation:
    options = {"max_tokens": 10, "stop": None, "constrain": None, "ban": None}
    options |= {"stop_at_eos": True, "vocab_size": stream.vocab, **kwargs}
    return Generation(stream, tiny.tokenizer, Sampler(), seed=0, **options)


async def test_sampled_and_accepted_tokens_go_to_the_stream(tiny: LoadedModel) -> None:
    words = tiny.tokenizer.encode(" red green blue")
    eos = tiny.tokenizer.eos_token_ids[0]
    stream = Script([*words, eos], tiny.model.config.vocab_size)
    gen = _generation(tiny, stream)
    first = await gen.__anext__()
    gen.accept([7, 8])
    result = await gen.collect()
    assert first.token == words[0] and result.finish_reason == "eos"
    assert stream.appended == [words[0], 7, 8, *words[1:], eos]
    assert result.text == " red green blue"


async def test_stop_strings_and_stop_end_the_stream(tiny: LoadedModel) -> None:
    words = tiny.tokenizer.encode(" red green blue")
    gen = _generation(tiny, Script(words, tiny.model.config.vocab_size), stop=[" green"])
    result = await gen.collect()
    assert (result.finish_reason, result.text) == ("stop", " red")
    idle = _generation(tiny, Script(words, tiny.model.config.vocab_size))
    idle.stop()
    assert idle.finish_reason == "cancelled" and (await idle.collect()).tokens == ()
