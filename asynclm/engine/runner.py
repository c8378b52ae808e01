"""The model runner: turns a scheduled batch into tensors and runs the model.

`prepare` lays the chunks of a batch out as one ragged batch (tokens and positions
concatenated, the slots to write, how each sequence attends, which rows return logits) on the
event loop; `run` executes the model on it on the runner's own thread.
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections.abc import Sequence as Seq
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from asynclm.engine.attention import BatchMeta, SequenceBatch
from asynclm.engine.batch_layout import (
    DECODE_GROUP_MAX_KEYS,
    attention_layout,
    decode_group,
    in_order,
)
from asynclm.engine.forward_thread import ForwardThread
from asynclm.engine.kv_cache import KVCache
from asynclm.engine.model import EngineModel
from asynclm.engine.policy import Chunk
from asynclm.engine.request import ForwardRequest
from asynclm.engine.sequence import Sequence
from asynclm.engine.threads import ThreadPlan


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


@dataclass(slots=True)
class _Slots:
    """A sequence's KV slots as a tensor that grows in place (rebuilt when they change)."""

    epoch: int
    length: int
    data: Tensor  # [capacity], the first `length` filled


class ModelRunner:
    """Runs one model over the engine's KV pool."""

    def __init__(self, model: EngineModel, kv: KVCache) -> None:
        self.model = model
        self.kv = kv
        self.device = model.device  # read once: a module's device is a slow attribute lookup
        self._slots: weakref.WeakKeyDictionary[Sequence, _Slots] = weakref.WeakKeyDictionary()
        self._thread = ForwardThread()
        self.threads: ThreadPlan | None = None  # thread count per phase (measured at load)

    def prepare(self, chunks: Seq[Chunk[ForwardRequest]]) -> PreparedBatch:
        """The tensors of a batch whose KV slots are reserved (not yet committed).

        Every index of the batch goes to the device in one tensor (a decode step is made of
        a handful of numbers: one copy, then views).
        """
        tokens: list[int] = []
        positions: list[int] = []
        write: list[int] = []
        rows: list[int] = []  # rows whose logits are returned
        counts: list[int] = []
        decode_rows: list[int] = []  # one-token steps: their rows and key counts
        decode_lengths: list[int] = []
        for c in chunks:
            req, first_new = c.request, c.request.seq.num_tokens
            tokens += req.tokens[c.start : c.end]
            positions += req.positions[c.start : c.end]
            write += req.seq.table.slots[first_new : first_new + c.length]
            wanted = req.logit_rows(c.start, c.length)
            rows += [c.row + i for i in wanted]
            counts.append(len(wanted))
            if self._decodes(c, first_new + c.length):
                decode_rows.append(c.row)
                decode_lengths.append(first_new + 1)
        n = len(tokens)
        flat = self._long(tokens + positions + write + rows + decode_rows + decode_lengths)
        cut = list(itertools.accumulate((n, n, n, len(rows), len(decode_rows))))
        views = flat.tensor_split(cut)  # tokens, positions, write, rows, decode rows, lengths
        single, multi = self._attention(chunks)
        group = decode_group(single, views[4], views[5])
        meta = BatchMeta(views[2], tuple(multi), views[3], group)
        return PreparedBatch(views[0], views[1], meta, tuple(counts))

    def _decodes(self, c: Chunk[ForwardRequest], keys: int) -> bool:
        """Whether a chunk joins the batch's decode group (one token; any length if the model
        attends to the pool in place, else up to `DECODE_GROUP_MAX_KEYS` keys)."""
        paged = bool(getattr(self.model, "paged_decode", False))
        return c.length == 1 and (paged or keys <= DECODE_GROUP_MAX_KEYS)

    def _attention(
        self, chunks: Seq[Chunk[ForwardRequest]]
    ) -> tuple[list[Tensor], list[SequenceBatch]]:
        """The key slots of the decode steps, and how every longer chunk attends."""
        single: list[Tensor] = []
        multi: list[SequenceBatch] = []
        for c in chunks:
            keys = c.request.seq.num_tokens + c.length
            kv_slots = self.slot_tensor(c.request.seq, keys)
            if self._decodes(c, keys):
                single.append(kv_slots)
            else:
                kv_range, mask, runs = attention_layout(kv_slots, c.length)
                ordered = in_order(kv_slots, kv_range)
                multi.append(
                    SequenceBatch(c.row, c.length, kv_slots, mask, kv_range, runs, ordered)
                )
        return single, multi

    async def run(self, batch: PreparedBatch) -> tuple[Tensor, float]:
        """`execute` on the runner's own thread, so the event loop stays free meanwhile."""
        return await self._thread.run(self.execute, batch)

    def execute(self, batch: PreparedBatch) -> tuple[Tensor, float]:
        """Run the model: the logits of the wanted rows (on the CPU) and the seconds it took."""
        if self.threads is not None:  # a decode step may want fewer threads than a prefill
            wanted = self.threads.threads(decode_only=batch.num_tokens == len(batch.logit_counts))
            if torch.get_num_threads() != wanted:
                torch.set_num_threads(wanted)
        t0 = time.perf_counter()
        logits = self.model(batch.tokens, batch.positions, batch.meta, self.kv)
        if logits.device.type != "cpu":
            logits = logits.cpu()
        return logits, time.perf_counter() - t0

    def copy_pages(self, pairs: Seq[tuple[int, int]]) -> None:
        """Copy whole pages (copy-on-write of shared pages before they are written)."""
        self.kv.copy_pages(pairs)

    def slot_tensor(self, seq: Sequence, length: int | None = None) -> Tensor:
        """The first `length` (default all) KV slots of a sequence as a tensor; kept between
        calls and grown in place, rebuilt only when slots already handed out changed."""
        slots = seq.table.slots
        cached = self._slots.get(seq)
        if cached is None or cached.epoch != seq.epoch or cached.length > len(slots):
            cached = _Slots(seq.epoch, len(slots), self._long(slots))
        elif cached.length < len(slots):
            self._grow(cached, slots)
        self._slots[seq] = cached
        return cached.data[: len(slots) if length is None else length]

    def _grow(self, cached: _Slots, slots: list[int]) -> None:
        new = slots[cached.length :]
        if len(slots) > cached.data.numel():  # double the room, so appends stay O(1)
            room = torch.empty(
                max(2 * cached.data.numel(), len(slots)), dtype=torch.long, device=self.device
            )
            room[: cached.length] = cached.data[: cached.length]
            cached.data = room
        if len(new) == 1 and self.device.type == "cpu":  # a decode step: no torch dispatch
            cached.data.numpy()[cached.length] = new[0]
        elif len(new) == 1:
            cached.data[cached.length] = new[0]
        else:
            cached.data[cached.length : len(slots)] = self._long(new)
        cached.length = len(slots)

    def _long(self, values: list[int]) -> Tensor:
        if self.device.type == "cpu":  # a third of torch.tensor's time for a few numbers
            return torch.from_numpy(np.array(values, dtype=np.int64))
        return torch.tensor(values, dtype=torch.long, device=self.device)
