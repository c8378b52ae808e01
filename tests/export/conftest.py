"""Export fixtures: a tiny transformers base model and a random CML adapter for it."""

from __future__ import annotations

import pytest

from asynclm.engine.loader import to_transformers
from tests.export.adapters import make_cml_adapter


@pytest.fixture(scope="module")
def tiny_base(tiny, tmp_path_factory):
    """The tiny random model saved as a transformers folder."""
    folder = tmp_path_factory.mktemp("tiny-base")
    to_transformers(tiny.model).save_pretrained(folder)
    tiny.tokenizer.hf.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_adapter(tiny, tiny_base, tmp_path_factory):
    """(adapter folder, the PEFT model it came from) on the tiny base."""
    folder = tmp_path_factory.mktemp("tiny-adapter")
    peft_model = make_cml_adapter(to_transformers(tiny.model), tiny.tokenizer.hf, folder, seed=1)
    return folder, peft_model
