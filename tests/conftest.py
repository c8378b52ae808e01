"""Shared test configuration: anyio tests run on asyncio."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def tiny():
    """The tiny random Llama (2 layers, hidden 64) with the real SmolLM2 tokenizer."""
    from asynclm.engine.loader import load_model

    return load_model("tiny")
