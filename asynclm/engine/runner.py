"""The model runner: turns a scheduled batch into tensors and runs the model.

`prepare` lays the chunks of a batch out as one ragged batch (tokens and positions
concatenated, the slots to write, how each sequence attends, which rows return logits) on the
event loop; `execute` runs the model on it and is meant for a worker thread.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence as Seq
from dataclasses import dataclass

import torch
from torch import Tensor

from asynclm.engine.batch_layout import DECODE_GROUP_MAX_KEYS, attention_layout, decode_group
from asynclm.engine.kv_cache import KVCache
from asynclm.engine.model import BatchMeta, EngineModel, SequenceBatch
from asynclm.engine.policy import Chunk
from asynclm.engine.request import ForwardRequest
from asynclm.engine.sequence import Sequence


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch as the model takes it, and how many logit rows each chunk gets back."""

    tokens: Tensor  # [T]
    positions: Tensor  # [T]
    meta: BatchMeta
    logit_counts: tuple[int, ...]  # per chunk, in chunk order

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.numel())


class ModelRunner:
    """Runs one model over the engine's KV pool."""

    def __init__(self, model: EngineModel, kv: KVCache) -> None:
        self.model = model
        self.kv = kv
        self.device = model.device  # read once: a module's device is a slow attribute lookup
        self._slots: weakref.WeakKeyDictionary[Sequence, tuple[int, Tensor]] = (
            weakref.WeakKeyDictionary()
        )

    def prepare(self, chunks: Seq[Chunk[ForwardRequest]]) -> PreparedBatch:
        """The tensors of a batch whose KV slots are reserved (not yet committed)."""
        tokens: list[int] = []
        positions: list[int] = []
        write: list[int] = []
        rows: list[int] = []
        counts: list[int] = []
        multi: list[SequenceBatch] = []
        single: list[tuple[int, Tensor]] = []  # (row, kv slots) of one-token steps
        for c in chunks:
            req, seq = c.request, c.request.seq
            tokens += req.tokens[c.start : c.end]
            positions += req.positions[c.start : c.end]
            first_new = seq.num_tokens
            write += seq.table.slots[first_new : first_new + c.length]
            kv_slots = self.slot_tensor(seq)[: first_new + c.length]
            if c.length == 1 and kv_slots.numel() <= DECODE_GROUP_MAX_KEYS:
                single.append((c.row, kv_slots))
            else:
                kv_range, mask, runs = attention_layout(kv_slots, c.length)
                multi.append(SequenceBatch(c.row, c.length, kv_slots, mask, kv_range, runs))
            wanted = req.logit_rows(c.start, c.length)
            rows += [c.row + i for i in wanted]
            counts.append(len(wanted))
        meta = BatchMeta(
            self._long(write), tuple(multi), self._long(rows), decode_group(single, self.device)
        )
        return PreparedBatch(self._long(tokens), self._long(positions), meta, tuple(counts))

    def execute(self, batch: PreparedBatch) -> tuple[Tensor, float]:
        """Run the model: the logits of the wanted rows (on the CPU) and the seconds it took."""
        t0 = time.perf_counter()
        logits = self.model(batch.tokens, batch.positions, batch.meta, self.kv)
        if logits.device.type != "cpu":
            logits = logits.cpu()
        return logits, time.perf_counter() - t0

    def copy_pages(self, pairs: Seq[tuple[int, int]]) -> None:
        """Copy whole pages (copy-on-write of shared pages before they are written)."""
        self.kv.copy_pages(pairs)

    def slot_tensor(self, seq: Sequence) -> Tensor:
        """Every KV slot of a sequence as a tensor, rebuilt only when its slots changed."""
        slots = seq.table.slots
        epoch, cached = self._slots.get(seq, (-1, None))
        if cached is not None and epoch == seq.epoch and cached.numel() == len(slots):
            return cached
        if cached is None or epoch != seq.epoch or cached.numel() > len(slots):
            cached = self._long(slots)
        else:  # appended since: extend
            cached = torch.cat((cached, self._long(slots[cached.numel() :])))
        self._slots[seq] = (seq.epoch, cached)
        return cached

    def _long(self, values: list[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.long, device=self.device)
