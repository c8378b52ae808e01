"""Which weight formats the engine may use, and which kernels that offers each linear layer.

`weights=` of `Engine`/`Engine.load` (see `WeightPolicy.parse`):

- `auto` (default): exact. Float32, plus the block formats (q4_1, q8_0) for weights they
  reproduce bit for bit: the default model is a Q4_1 GGUF, so its layer weights decode from 4-bit
  blocks with logits equal to the float32 ones (up to summation order). A weight that came from
  elsewhere (a transformers checkpoint) stays float32. A LoRA adapter merged into exact weights
  is also offered unmerged (`q4_1_lora`: the exact base block kernel plus the low-rank product in
  float32), and the tuner keeps whichever of merged and unmerged is faster per batch size.
- `fp32`: float32 kernels only.
- `int8`, `bf16`, `fp16` (or several, comma-separated: `bf16,int8`): also kernels on copies
  rounded to that format, used at the batch sizes where they are faster. Approximate: their
  quality change is measured by `asynclm bench engine`; opt-in.

Every candidate is measured (`asynclm.engine.tuning`) and only the fastest is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from asynclm.engine.kernels.formats import BlockWeight, exact_rows, quantize
from asynclm.engine.kernels.linear import FP32_KERNELS, HALF_KERNELS
from asynclm.engine.kernels.lowrank import LowRank

_ROUNDED = {"int8": ("q8_0",), "bf16": ("bf16", "bf16_packed"), "fp16": ("fp16",)}
_MAX_TAIL = 4096  # rows after an exact block prefix still computed in float32 (added tokens)


@dataclass(frozen=True, slots=True)
class WeightPolicy:
    """Allowed formats.

    Attributes:
        lossless: Use block formats where they reproduce a weight exactly.
        rounded: Approximate formats allowed (`int8`, `bf16`, `fp16`).
    """

    lossless: bool = True
    rounded: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> WeightPolicy:
        """`auto`, `fp32`, or a comma-separated choice of `int8`, `bf16`, `fp16`."""
        names = [part.strip().lower() for part in spec.split(",") if part.strip()]
        if names == ["auto"]:
            return cls()
        if names == ["fp32"]:
            return cls(lossless=False)
        unknown = [n for n in names if n not in _ROUNDED]
        if not names or unknown:
            raise ValueError(
                f"weights={spec!r}: expected 'auto', 'fp32', or a comma-separated choice of "
                f"{', '.join(_ROUNDED)}"
            )
        return cls(lossless=True, rounded=tuple(dict.fromkeys(names)))

    @property
    def spec(self) -> str:
        if self.rounded:
            return ",".join(self.rounded)
        return "auto" if self.lossless else "fp32"

    @property
    def is_exact(self) -> bool:
        """No approximate format is allowed."""
        return not self.rounded

    def block_weight(self, weight: Tensor) -> BlockWeight | None:
        """The block copy of a weight this policy allows: exact if any, else rounded to q8_0."""
        if self.lossless:
            exact = exact_rows(weight, _MAX_TAIL)
            if exact is not None:
                return exact
        if "int8" in self.rounded and weight.dim() == 2 and weight.shape[1] % 32 == 0:
            return quantize(weight, "q8_0")
        return None

    def candidates(
        self, block: BlockWeight | None, lowrank: LowRank | None = None
    ) -> tuple[str, ...]:
        """The kernels to measure for a linear layer whose block copy (if any) is `block`.

        A layer with an unmerged adapter (`lowrank`) also gets its exact base block kernel plus
        the low-rank product, where exact formats are allowed.
        """
        names = list(FP32_KERNELS)
        if block is not None:
            names.append(block.format)
        if lowrank is not None and self.lossless:
            names.append(f"{lowrank.base.format}_lora")
        for fmt in self.rounded:
            names += [n for n in _ROUNDED[fmt] if n in HALF_KERNELS]
        return tuple(names)
