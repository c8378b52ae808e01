"""LoRA training on packed rows with transformers' Trainer and PEFT.

The CML markers are added to the tokenizer as special tokens; their embedding rows start as the
mean of the rows of the pieces their text splits into, and are trained through PEFT's
`trainable_token_indices` (with tied input/output embeddings, as SmolLM2 has, PEFT ties the
output side to the same rows). The adapter is saved in half precision with the tokenizer, so
`Engine.load(model, adapter=DIR)` picks up the added tokens.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from torch.optim.lr_scheduler import LambdaLR
from transformers import Trainer, TrainerCallback, TrainingArguments

from asynclm.cml.tokens import MARKERS
from asynclm.engine.tokenizer import Tokenizer
from asynclm.finetune.config import TrainConfig
from asynclm.finetune.packing import IGNORE, ancestor_ranges
from asynclm.finetune.tree_attention import plan as tree_plan
from asynclm.finetune.tree_attention import use_tree_attention

# ---- the base model --------------------------------------------------------------------------


def load_base(name: str, seed: int = 0) -> tuple[Any, Tokenizer]:
    """A transformers causal LM and our tokenizer for `name` (never from a hub)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from asynclm.engine.loader import DEFAULT_MODEL, default_tokenizer, load_model, to_transformers

    if name == "tiny":
        tiny = load_model("tiny", seed=seed, device="cpu").model
        return to_transformers(tiny), default_tokenizer()
    if name == DEFAULT_MODEL:
        return _default_model(), default_tokenizer()
    path = Path(name).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"unknown model {name!r}: not a preset and not a model folder")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    return model, Tokenizer(AutoTokenizer.from_pretrained(path, local_files_only=True))


def _default_model() -> Any:
    """SmolLM2-135M from its GGUF file, dequantised to float32 and kept as a transformers
    folder in the cache (the GGUF conversion takes about a minute; the folder loads in
    seconds). The weights are the engine's: an adapter trained on them merges into them."""
    import hashlib
    import shutil

    from transformers import AutoModelForCausalLM

    from asynclm.engine.loader import smollm2_gguf_path
    from asynclm.engine.paths import cache_root

    gguf = smollm2_gguf_path()
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    folder = cache_root() / "training" / key.hexdigest()[:20]
    if (folder / "config.json").exists():
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                    local_files_only=True)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    _forget_quantization(model)
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    model.save_pretrained(tmp)
    if folder.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(folder)
    return model


def _forget_quantization(model: Any) -> None:
    """A GGUF load is dequantised to float, but transformers still marks the model quantized
    (and refuses to train it); clear the marks."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def add_cml_embeddings(model: Any, tokenizer: Tokenizer) -> list[int]:
    """Adds the CML markers to tokenizer and model; each new row is the mean of its pieces'."""
    pieces = {marker: tokenizer.encode(marker) for marker in MARKERS}
    ids = tokenizer.add_special_tokens(MARKERS)
    if len(tokenizer.hf) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer.hf), mean_resizing=False)
    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        for marker, token in zip(MARKERS, ids, strict=True):
            if pieces[marker] != [token]:  # a fresh token: start from its text's meaning
                weight[token] = weight[pieces[marker]].mean(0)
    return ids


def with_lora(model: Any, cfg: TrainConfig, token_ids: Sequence[int]) -> Any:
    """The model wrapped with a LoRA adapter and trainable CML token rows: a fresh one, or the
    adapter in `cfg.init_adapter` made trainable again (its own LoRA shape is kept)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if cfg.init_adapter is not None:
        folder = _adapter_folder(cfg.init_adapter, token_ids)
        return PeftModel.from_pretrained(model, folder, is_trainable=True)

    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
        trainable_token_indices={"embed_tokens": sorted(token_ids)},
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _adapter_folder(path: str, token_ids: Sequence[int]) -> Path:
    """A trained adapter folder to start from, checked: it must train the same CML token rows.

    Raises:
        FileNotFoundError: No adapter there.
        ValueError: It was trained for other token rows (another tokenizer or base model).
    """
    folder = Path(path).expanduser()
    config = folder / "adapter_config.json"
    if not config.is_file():
        raise FileNotFoundError(f"no adapter to start from in {folder} (no adapter_config.json)")
    rows = json.loads(config.read_text()).get("trainable_token_indices") or {}
    trained = sorted(rows.get("embed_tokens", []) if isinstance(rows, dict) else rows)
    if trained != sorted(token_ids):
        raise ValueError(
            f"the adapter in {folder} trains token rows {trained}, but this model's CML tokens "
            f"are {sorted(token_ids)}: it was trained for another tokenizer or model"
        )
    return folder


# ---- batches ----------------------------------------------------------------------------------


def collate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pads packed rows and lays out who sees whom: the dense 4D attention mask (each token
    sees its ancestors) and the same as spans for the tree attention (`tree_attention.py`)."""
    length = max(len(r["input_ids"]) for r in rows)
    batch = len(rows)
    input_ids = torch.zeros(batch, length, dtype=torch.long)
    positions = torch.zeros(batch, length, dtype=torch.long)
    targets = torch.full((batch, length), IGNORE, dtype=torch.long)
    mask = torch.zeros(batch, 1, length, length, dtype=torch.bool)
    for b, row in enumerate(rows):
        n = len(row["input_ids"])
        input_ids[b, :n] = torch.tensor(row["input_ids"])
        positions[b, :n] = torch.tensor(row["positions"])
        targets[b, :n] = torch.tensor(row["targets"])
        _fill_mask(mask[b, 0], row["segments"])
        mask[b, 0, range(n, length), range(n, length)] = True  # padding sees itself only
    return {
        "input_ids": input_ids,
        "position_ids": positions,
        "attention_mask": mask,
        "targets": targets,
        "tree": tree_plan([row["segments"] for row in rows]),
    }


def _fill_mask(mask: torch.Tensor, segments: Sequence[Sequence[int]]) -> None:
    for i, (start, end, _) in enumerate(segments):
        mask[start:end, start:end] = torch.ones(end - start, end - start, dtype=torch.bool).tril()
        for a, b in ancestor_ranges(segments, i):
            mask[start:end, a:b] = True


def packed_loss(model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the tokens that have a target (logits computed only there)."""
    targets = inputs["targets"]
    keep = (targets != IGNORE).any(0).nonzero().squeeze(-1)
    out = model(
        input_ids=inputs["input_ids"],
        position_ids=inputs["position_ids"],
        attention_mask=inputs["attention_mask"],
        logits_to_keep=keep,
        tree=inputs.get("tree"),
    )
    logits = out.logits.float()  # [B, K, V]
    picked = targets[:, keep]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        picked.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    count = int((picked != IGNORE).sum())
    return loss / max(count, 1), count


# ---- the time budget --------------------------------------------------------------------------


class TimeBudget:
    """Training progress measured by the clock, for runs held to a number of minutes.

    On a shared CPU the speed of a step changes with the load, so a step count fitted in
    advance either stops the schedule half-way or ends early. Here the learning rate follows
    the fraction of the budget spent: a linear warm-up over the first 5 percent, flat, then a
    linear decay to zero over the last 25 percent; training stops when the budget is spent.

    Args:
        minutes: The budget.
        spent_s: Seconds already spent (a resumed run).
    """

    WARMUP = 0.05
    DECAY = 0.25

    def __init__(self, minutes: float, spent_s: float = 0.0) -> None:
        if minutes <= 0:
            raise ValueError(f"the time budget must be positive, got {minutes} minutes")
        self.seconds = minutes * 60
        self.spent = spent_s
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return self.spent + time.monotonic() - self.started

    def fraction(self) -> float:
        return min(1.0, self.elapsed() / self.seconds)

    def factor(self, _step: int = 0) -> float:
        """The learning-rate multiplier now (the step number is ignored)."""
        return schedule_factor(self.fraction(), self.WARMUP, self.DECAY)


def schedule_factor(fraction: float, warmup: float, decay: float) -> float:
    """Warm-up, flat, decay: the multiplier at `fraction` of the budget."""
    if fraction < warmup:
        return max(fraction / warmup, 0.01)
    if fraction > 1 - decay:
        return max(0.0, (1 - fraction) / decay)
    return 1.0


class BudgetCallback(TrainerCallback):
    """Holds a run to its `TimeBudget`: the loss on the eval rows at half time, checkpoints
    every tenth of the budget (the seconds spent saved beside them, for `--resume`), a clean
    stop when the budget is spent."""

    def __init__(self, budget: TimeBudget, clock_file: Path) -> None:
        self.budget = budget
        self.clock_file = clock_file
        self.evaluated = False
        self.saved_tenths = int(budget.fraction() * 10)
        self.hit = False

    def on_step_end(self, args, state, control, **kwargs):
        fraction = self.budget.fraction()
        if fraction >= 0.5 and not self.evaluated:
            control.should_evaluate = self.evaluated = True
        if int(fraction * 10) > self.saved_tenths:
            control.should_save = True
            self.saved_tenths = int(fraction * 10)
        if fraction >= 1.0:
            control.should_training_stop = control.should_save = self.hit = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.clock_file.write_text(json.dumps({"spent_s": round(self.budget.elapsed(), 1)}))
        return control


def spent_seconds(clock_file: Path) -> float:
    """Seconds a resumed run already spent (0 for a fresh one)."""
    if not clock_file.exists():
        return 0.0
    return float(json.loads(clock_file.read_text())["spent_s"])


# ---- the trainer ------------------------------------------------------------------------------


class PackedTrainer(Trainer):
    """transformers' `Trainer` on packed rows: the loss of `packed_loss`; with a time budget,
    the learning rate follows the clock."""

    def __init__(self, *args: Any, budget: TimeBudget | None = None, **kwargs: Any) -> None:
        self.budget = budget
        super().__init__(*args, **kwargs)

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.budget is None:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, self.budget.factor)
        return self.lr_scheduler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, _ = packed_loss(model, inputs)
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad():
            loss, _ = packed_loss(model, inputs)
        return loss.detach(), None, None


def training_arguments(cfg: TrainConfig, out: Path, has_eval: bool) -> TrainingArguments:
    """The Trainer's arguments for `cfg` (CPU unless CUDA is present).

    A run with a time budget evaluates and saves on the clock (`BudgetCallback`); one without
    follows a cosine schedule over `cfg.steps`, evaluating and saving every few steps.
    """
    timed = cfg.max_minutes is not None
    return TrainingArguments(
        output_dir=str(out / "checkpoints"),
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_rows,
        per_device_eval_batch_size=cfg.batch_rows,
        gradient_accumulation_steps=cfg.rows_per_step // cfg.batch_rows,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=math.ceil(cfg.warmup_ratio * cfg.steps),
        weight_decay=0.0,
        logging_steps=1 if timed else max(1, min(10, cfg.steps // 20)),
        eval_strategy="steps" if has_eval and not timed else "no",
        eval_steps=cfg.eval_every,
        save_strategy="no" if timed else "steps",
        save_steps=cfg.save_every,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.precision == "bf16",
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def make_trainer(
    model: Any, cfg: TrainConfig, data: Any, out: Path, resume: bool = False
) -> tuple[Trainer, BudgetCallback | None]:
    """A `Trainer` for packed rows (progress bar, eval loss, checkpoints) and, for a run held
    to `cfg.max_minutes`, the callback that keeps it to its time budget. The model attends
    over each row's prefix tree only where tokens see each other (`tree_attention.py`)."""
    clock = out / "checkpoints" / "time_spent.json"
    budget = None
    if cfg.max_minutes is not None:
        budget = TimeBudget(cfg.max_minutes, spent_seconds(clock) if resume else 0.0)
    callback = BudgetCallback(budget, clock) if budget is not None else None
    has_eval = len(data["eval"]) > 0
    use_tree_attention(model)
    trainer = PackedTrainer(
        model=model,
        args=training_arguments(cfg, out, has_eval),
        train_dataset=data["train"],
        eval_dataset=data["eval"] if has_eval else None,
        data_collator=collate,
        callbacks=[callback] if callback is not None else [],
        budget=budget,
    )
    return trainer, callback


def save_adapter(model: Any, tokenizer: Tokenizer, folder: Path) -> Path:
    """Saves the adapter (half precision safetensors) and the tokenizer with the CML tokens."""
    from safetensors.torch import load_file, save_file

    folder.mkdir(parents=True, exist_ok=True)
    # The new rows travel as trainable-token values; the engine grows the embeddings on load,
    # so the (resized) embedding matrix itself is not saved: the adapter stays a few MB.
    model.save_pretrained(str(folder), save_embedding_layers=False)
    weights = folder / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    save_file(
        {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()},
        str(weights),
        metadata={"format": "pt"},
    )
    tokenizer.hf.save_pretrained(str(folder))
    return folder


def pick_threads(model: Any, threads: int | None, tokens: int = 192) -> dict[str, Any]:
    """Sets torch's CPU threads: `threads`, or the faster of 1 and all cores on a forward."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads or torch.cuda.is_available():
        if threads:
            torch.set_num_threads(threads)
        return {"threads": torch.get_num_threads(), "measured": {}}
    cores = os.cpu_count() or 1
    ids = torch.randint(0, 1000, (1, tokens))
    timings = {}
    for n in sorted({1, cores}):
        torch.set_num_threads(n)
        with torch.no_grad():
            model(input_ids=ids, logits_to_keep=1)  # warm-up
            started = time.perf_counter()
            model(input_ids=ids, logits_to_keep=1)
        timings[n] = round(time.perf_counter() - started, 3)
    best = min(timings, key=lambda n: timings[n])
    torch.set_num_threads(best)
    return {"threads": best, "measured": {f"{n}_threads_forward_s": t for n, t in timings.items()}}


def trainable_summary(model: Any) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_parameters": trainable, "total_parameters": total}


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))
