"""The training's number format: chosen by measurement, bf16 weights that change no product."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

from asynclm.cli import main
from asynclm.finetune.config import TrainConfig
from asynclm.finetune.precision import choose_precision, store_frozen_in_bf16


def test_a_configured_precision_is_kept_without_measuring():
    for name in ("fp32", "bf16"):
        choice = choose_precision(name, device="cpu")
        assert (choice.precision, choice.requested, choice.measured) == (name, name, {})


def test_auto_times_both_formats_and_keeps_the_faster_by_a_margin():
    choice = choose_precision("auto", device="cpu")
    assert set(choice.measured) == {"fp32", "bf16"}
    assert all(t > 0 for t in choice.measured.values())
    faster = choice.measured["bf16"] < 0.8 * choice.measured["fp32"]
    assert choice.precision == ("bf16" if faster else "fp32")
    assert choice.as_dict()["requested"] == "auto" and "measured" in choice.reason


@pytest.mark.parametrize("bad", ["fp16", "", "BF16"])
def test_an_unknown_precision_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision(bad)
    with pytest.raises(ValueError, match="precision must be auto, fp32 or bf16"):
        TrainConfig(precision=bad)


def _lora_model():
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.ReLU(), torch.nn.Linear(48, 16))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["0", "2"], init_lora_weights=False)
    return get_peft_model(base, config)


def test_bf16_frozen_weights_give_the_products_autocast_gives():
    model = _lora_model()
    x = torch.randn(5, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(x).float()
    assert store_frozen_in_bf16(model) == 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        after = model(x).float()
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    assert store_frozen_in_bf16(model) == 0  # already stored so: nothing to do twice


def test_finetune_in_bf16_trains_and_records_the_choice(tmp_path):
    out = tmp_path / "run"
    args = ["finetune", "--model", "tiny", "--steps", "2", "--precision", "bf16"]
    assert main([*args, "--out", str(out)]) == 0
    train = json.loads((out / "metrics.json").read_text())["train"]
    assert train["precision"]["precision"] == "bf16" and train["steps"] == 2
    assert all(loss == loss for loss in train["eval_loss"])  # evaluated under bf16 too: no NaN
