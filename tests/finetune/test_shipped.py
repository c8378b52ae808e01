"""The shipped adapter: where it is found, how `adapter="auto"` resolves, what the folder holds."""

import json

import pytest

from asynclm.engine.loader import resolve_adapter, shipped_adapter
from asynclm.finetune.pipeline import ADAPTER_NAME, shipped_root


def test_auto_resolves_to_the_shipped_adapter_of_the_preset_only():
    assert resolve_adapter("tiny", "auto") is None
    assert resolve_adapter("/some/model", "auto") is None
    assert resolve_adapter("smollm2-135m", "auto") == shipped_adapter("smollm2-135m")


def test_none_turns_the_adapter_off_and_a_folder_is_kept():
    assert resolve_adapter("smollm2-135m", None) is None
    assert resolve_adapter("smollm2-135m", "none") is None
    assert resolve_adapter("smollm2-135m", "runs/x/adapter") == "runs/x/adapter"


def test_the_pipeline_ships_where_the_loader_looks():
    folder = shipped_root() / ADAPTER_NAME
    found = shipped_adapter("smollm2-135m")
    assert found is None or found == folder


def test_the_shipped_adapter_is_small_and_documented():
    folder = shipped_adapter("smollm2-135m")
    if folder is None:
        pytest.skip("no adapter shipped")
    assert (folder / "adapter_model.safetensors").stat().st_size < 20 * 2**20
    assert (folder / "tokenizer.json").exists()
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("cml_wellformed", "call_exact_match", "result_use", "train_minutes"):
        assert key in metrics
    config = json.loads((folder / "finetune_config.json").read_text())
    assert config["config"]["train"]["model"] == "smollm2-135m"
