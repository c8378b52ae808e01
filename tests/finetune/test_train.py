"""Training end to end on small models: the command, the adapter files, tied embeddings."""

import json

import pytest
import torch
from safetensors.torch import load_file

from asynclm.cli import main
from asynclm.cml.tokens import MARKERS


def test_asynclm_finetune_tiny_runs_and_writes_adapter_config_and_metrics(tmp_path):
    out = tmp_path / "run"
    assert main(["finetune", "--model", "tiny", "--steps", "3", "--out", str(out)]) == 0
    adapter = out / "adapter"
    assert (adapter / "adapter_config.json").exists()
    assert (adapter / "tokenizer.json").exists()
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float16}
    assert any("trainable_tokens" in k for k in weights)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 3
    assert metrics["train_minutes"] >= 0
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["train"]["steps"] == 3
    stats = json.loads((out / "stats.json").read_text())
    assert stats["tasks"] > 0 and stats["loss_tokens"] > 0
    assert sum(stats["rows"].values()) > 0


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert main(["finetune", "--model", "tiny", "--steps", "2", "--out", str(out)]) == 0
    assert main(["finetune", "--model", "tiny", "--steps", "4", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == 4


@pytest.fixture
def tied_model_dir(tmp_path):
    """A tiny Llama with tied input/output embeddings, as SmolLM2 has, saved as a folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from asynclm.engine.loader import default_tokenizer

    tokenizer = default_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer.hf),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    folder = tmp_path / "tied"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.hf.save_pretrained(folder)
    return folder


def test_trained_token_rows_reach_both_tied_embeddings_after_the_merge(tied_model_dir, tmp_path):
    from asynclm.engine.loader import load_model

    out = tmp_path / "run"
    code = main(
        [
            "finetune",
            "--preset",
            "tiny",
            "--model",
            str(tied_model_dir),
            "--steps",
            "3",
            "--lr",
            "0.05",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    (rows,) = [v for k, v in weights.items() if "trainable_tokens_delta" in k]
    merged = load_model(str(tied_model_dir), adapter=out / "adapter", use_cache=False)
    ids = [merged.tokenizer.encode(m, special=True) for m in MARKERS]
    assert all(len(i) == 1 for i in ids)  # each marker is one special token
    ids = [i[0] for i in ids]
    embedding = merged.model.tok_embeddings.weight[ids].float()
    output = merged.model.output.weight[ids].float()
    torch.testing.assert_close(embedding, rows.float(), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(output, rows.float(), atol=1e-3, rtol=1e-3)


def test_a_second_stage_starts_from_the_given_adapter(tmp_path):
    from asynclm.finetune.config import TrainConfig
    from asynclm.finetune.train import add_cml_embeddings, load_base, with_lora

    first = tmp_path / "first"
    args = ["finetune", "--model", "tiny", "--steps", "2", "--lr", "0.05"]
    assert main([*args, "--out", str(first)]) == 0
    saved = load_file(str(first / "adapter" / "adapter_model.safetensors"))

    model, tokenizer = load_base("tiny")
    ids = add_cml_embeddings(model, tokenizer)
    peft_model = with_lora(
        model, TrainConfig(model="tiny", init_adapter=str(first / "adapter")), ids
    )
    state = peft_model.state_dict()
    lora_b = [k for k in saved if "lora_B" in k]
    assert lora_b and any(saved[k].abs().max() > 0 for k in lora_b)  # it did learn something
    for key in lora_b:  # the second stage starts where the first ended (saved in half precision)
        (mine,) = [
            v
            for k, v in state.items()
            if k.endswith(key.removesuffix(".weight") + ".default.weight")
        ]
        torch.testing.assert_close(mine, saved[key].float())
    assert any(p.requires_grad for n, p in peft_model.named_parameters() if "lora_" in n)

    second = tmp_path / "second"
    init = ["--init-adapter", str(first / "adapter")]
    assert main([*args, "--out", str(second), *init]) == 0
    assert json.loads((second / "config.json").read_text())["config"]["train"]["init_adapter"]


def test_a_second_stage_refuses_a_missing_or_foreign_adapter(tmp_path):
    from asynclm.finetune.config import TrainConfig
    from asynclm.finetune.train import add_cml_embeddings, load_base, with_lora

    model, tokenizer = load_base("tiny")
    ids = add_cml_embeddings(model, tokenizer)
    with pytest.raises(FileNotFoundError, match="no adapter"):
        with_lora(model, TrainConfig(model="tiny", init_adapter=str(tmp_path)), ids)
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"trainable_token_indices": {"embed_tokens": [1, 2]}})
    )
    with pytest.raises(ValueError, match="another tokenizer or model"):
        with_lora(model, TrainConfig(model="tiny", init_adapter=str(tmp_path)), ids)


@pytest.mark.parametrize(
    "option", [["--lora-r", "8"], ["--lora-alpha", "8"], ["--lora-targets", "q_proj"]]
)
def test_a_second_stage_refuses_a_new_lora_shape_instead_of_ignoring_it(tmp_path, option):
    args = ["finetune", "--model", "tiny", "--steps", "1", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="cannot be combined with --init-adapter"):
        main([*args, "--init-adapter", str(tmp_path), *option])
    assert not (tmp_path / "out").exists()  # refused before anything was written
