"""The training configuration (light: no torch, so the command line starts fast)."""

from __future__ import annotations

from dataclasses import dataclass

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """How the adapter is trained.

    Attributes:
        model: `smollm2-135m`, `tiny` (random, for tests) or a transformers model folder.
        steps: Optimizer steps.
        rows_per_step: Packed rows per step (batch x gradient accumulation).
        batch_rows: Rows per forward.
        learning_rate: Peak learning rate (cosine decay after warm-up).
        warmup_ratio: Share of the steps spent warming up.
        lora_r / lora_alpha / lora_dropout / lora_targets: The LoRA adapter.
        eval_every / save_every: Steps between evaluation losses / checkpoints.
        eval_rows: Packed rows the evaluation loss is measured on (it costs a forward each).
        precision: "auto" (bf16 autocast where this machine runs it clearly faster than fp32,
            by a short measurement; `asynclm.finetune.precision`), "fp32" or "bf16".
        max_minutes: Stop training (saving what was learnt) after this long, if set.
        seed: Seed of the initialisation and the data order.
        threads: torch CPU threads; None measures 1 and all cores on a short forward and takes
            the faster (on a CPU shared with other work, fewer threads can be much faster).
        init_adapter: Start from this trained adapter folder (its LoRA shape and token rows)
            instead of a fresh adapter: a second stage of training on new data.
    """

    model: str = "smollm2-135m"
    steps: int = 200
    rows_per_step: int = 2
    batch_rows: int = 1
    learning_rate: float = 3e-4
    warmup_ratio: float = 0.05
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = LORA_TARGETS
    eval_every: int = 50
    save_every: int = 50
    eval_rows: int = 8
    precision: str = "auto"
    max_minutes: float | None = None
    seed: int = 0
    threads: int | None = None
    init_adapter: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        if self.batch_rows < 1 or self.rows_per_step % self.batch_rows:
            problems.append("rows_per_step must be a positive multiple of batch_rows")
        if self.precision not in ("auto", "fp32", "bf16"):
            problems.append(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.lora_r < 1:
            problems.append(f"lora_r must be >= 1, got {self.lora_r}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))
