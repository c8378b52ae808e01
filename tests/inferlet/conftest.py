"""Inferlet fixtures: an engine on the tiny random model."""

from __future__ import annotations

import pytest

from asynclm.engine.engine import Engine
from asynclm.engine.loader import LoadedModel


@pytest.fixture
def engine(tiny: LoadedModel) -> Engine:
    return Engine.from_loaded(tiny, num_pages=512, page_size=4, max_batch_tokens=64)
