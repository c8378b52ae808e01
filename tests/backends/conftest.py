"""Backend fixtures: the tokenizer of a CML-tuned SmolLM2 and a fake server on loopback."""

from __future__ import annotations

import pytest

from asynclm.cml.tokens import MARKERS
from asynclm.engine.loader import default_tokenizer
from tests.backends.fake_server import FakeServer


@pytest.fixture(scope="session")
def cml_tokenizer():
    tok = default_tokenizer()
    tok.add_special_tokens(MARKERS)
    return tok


@pytest.fixture
def make_server(cml_tokenizer):
    servers: list[FakeServer] = []

    def make(policy, **kwargs) -> FakeServer:
        server = FakeServer(policy, cml_tokenizer, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
