"""The scheduler: gathers forward work from all contexts into one ragged batch.

There is no background task. Whoever submits work while no batch is running becomes the
leader: it waits a few event-loop turns so other contexts can add their steps, forms a batch
(decode steps first, then prefill chunks up to `max_batch_tokens`), runs the model on a worker
thread (the event loop stays free for tools), resolves every request in the batch and hands
leadership on. Long prefills are chunked, so decode latency of other contexts stays bounded.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import anyio
import torch
from torch import Tensor

from asynclm.engine.model import BatchMeta, DecodeGroup, KeyRun, SequenceBatch, causal_mask
from asynclm.engine.pages import PoolExhaustedError
from asynclm.engine.scope import QuotaExceededError

if TYPE_CHECKING:
    from asynclm.engine.engine import Engine
    from asynclm.engine.sequence import Sequence

LogitsWanted = Literal["none", "last", "all"]
_GATHER_ROUNDS = 4
_DECODE_GROUP_MAX_KEYS = 1024  # longer contexts decode alone, in place, rather than padded+copied
_DENSE_RANGE = 1.5  # attend in place when the slot range is at most this much larger
_MAX_RUNS = 16  # at most this many contiguous runs are attended one by one and merged


@dataclass(eq=False)
class ForwardRequest:
    """Tokens to add to a sequence's KV, and which logits the caller wants back."""

    seq: Sequence
    tokens: list[int]
    positions: list[int]
    logits: LogitsWanted = "last"
    done: int = 0  # tokens already in the KV
    outputs: list[Tensor] = field(default_factory=list)
    error: BaseException | None = None
    finished: bool = False

    @property
    def remaining(self) -> int:
        return len(self.tokens) - self.done

    def result(self) -> Tensor | None:
        if self.error is not None:
            raise self.error
        if self.logits == "none" or not self.outputs:
            return None
        return self.outputs[0] if len(self.outputs) == 1 else torch.cat(self.outputs)


@dataclass(slots=True)
class _Chunk:
    request: ForwardRequest
    start: int
    length: int
    row: int  # first row in the batch


@dataclass(slots=True)
class BatchStats:
    """Counters for benchmarks and tests."""

    batches: int = 0
    tokens: int = 0
    max_sequences: int = 0
    model_seconds: float = 0.0


class Scheduler:
    def __init__(
        self, engine: Engine, max_batch_tokens: int = 512, max_solo_tokens: int = 4096
    ) -> None:
        if max_batch_tokens < 1 or max_solo_tokens < 1:
            raise ValueError("max_batch_tokens and max_solo_tokens must be >= 1")
        self.engine = engine
        self.max_batch_tokens = max_batch_tokens
        self.max_solo_tokens = max_solo_tokens
        self.stats = BatchStats()
        self._queue: list[ForwardRequest] = []
        self._busy = False
        self._batch_done: anyio.Event | None = None

    @property
    def num_pending(self) -> int:
        return len(self._queue)

    async def submit(self, request: ForwardRequest) -> Tensor | None:
        """Run a request to completion (possibly over several batches) and return its logits."""
        if not request.tokens:
            request.finished = True
            return None
        self._queue.append(request)
        try:
            while not request.finished:
                if self._busy:
                    await self._wait_for_batch()
                else:
                    await self._lead()
        finally:
            if not request.finished:  # cancelled: drop whatever was not computed yet
                self._queue.remove(request)
                request.finished = True
        return request.result()

    async def _wait_for_batch(self) -> None:
        if self._batch_done is None:
            self._batch_done = anyio.Event()
        await self._batch_done.wait()

    async def _lead(self) -> None:
        self._busy = True
        try:
            await self._gather()
            chunks = self._form_batch()
            if chunks:
                with anyio.CancelScope(shield=True):
                    await self._run(chunks)
        finally:
            self._busy = False
            done, self._batch_done = self._batch_done, None
            if done is not None:
                done.set()

    async def _gather(self) -> None:
        """Let other contexts add their next step before the batch is formed."""
        for _ in range(_GATHER_ROUNDS):
            before = len(self._queue)
            await anyio.sleep(0)
            if len(self._queue) == before:
                break

    def _form_batch(self) -> list[_Chunk]:
        eligible = self._eligible()
        # Chunk prefills only when others wait: alone, one causal pass is fastest.
        budget = self.max_batch_tokens if len(eligible) > 1 else self.max_solo_tokens
        rows = 0
        chunks: list[_Chunk] = []
        for req in sorted(eligible, key=lambda r: r.remaining):
            n = min(req.remaining, budget)
            if n <= 0:
                break
            if not self._reserve(req, n):
                continue
            chunks.append(_Chunk(req, req.done, n, rows))
            rows += n
            budget -= n
        return chunks

    def _eligible(self) -> list[ForwardRequest]:
        """The oldest request of each sequence (a sequence's work runs in submission order)."""
        first: dict[int, ForwardRequest] = {}
        for req in self._queue:
            first.setdefault(req.seq.id, req)
        return list(first.values())

    def _reserve(self, req: ForwardRequest, n: int) -> bool:
        """Take KV slots for n tokens of the request, or fail the request cleanly."""
        seq, pool = req.seq, self.engine.pool
        try:
            seq.scope.check(seq.table.pages_needed(pool, n), n)
            plan = seq.table.plan_append(pool, n)
        except (PoolExhaustedError, QuotaExceededError) as e:
            self._finish(req, e)
            return False
        seq.scope.charge(n)
        if plan.copies:
            self.engine.kv.copy_pages(plan.copies)
            seq.invalidate_slots()
        return True

    def _finish(self, req: ForwardRequest, error: BaseException | None = None) -> None:
        req.error = error
        req.finished = True
        if req in self._queue:
            self._queue.remove(req)

    async def _run(self, chunks: list[_Chunk]) -> None:
        inputs = self._prepare_inputs(chunks)
        try:
            logits, seconds = await anyio.to_thread.run_sync(self._execute, *inputs)
        except Exception as e:  # the model failed: undo the slot reservations
            for c in chunks:
                c.request.seq.truncate(self.engine.pool, c.request.seq.num_tokens)
                self._finish(c.request, e)
            return
        self._complete(chunks, logits, inputs[2])
        self.stats.batches += 1
        self.stats.tokens += int(inputs[0].numel())
        self.stats.max_sequences = max(self.stats.max_sequences, len(chunks))
        self.stats.model_seconds += seconds

    def _prepare_inputs(self, chunks: list[_Chunk]) -> tuple[Tensor, Tensor, BatchMeta]:
        device = self.engine.device
        tokens: list[int] = []
        positions: list[int] = []
        write: list[int] = []
        rows: list[int] = []
        multi: list[SequenceBatch] = []
        single: list[tuple[int, Tensor, int]] = []  # (row, kv slots, seq id)
        for c in chunks:
            req, seq = c.request, c.request.seq
            end = c.start + c.length
            tokens += req.tokens[c.start : end]
            positions += req.positions[c.start : end]
            first_new = seq.num_tokens
            write += seq.table.slots[first_new : first_new + c.length]
            kv_slots = seq.slot_tensor(device)[: first_new + c.length]
            if c.length == 1 and kv_slots.numel() <= _DECODE_GROUP_MAX_KEYS:
                single.append((c.row, kv_slots, seq.id))
            else:
                kv_range, mask, runs = attention_layout(kv_slots, c.length)
                multi.append(SequenceBatch(c.row, c.length, kv_slots, mask, seq.id, kv_range, runs))
            rows += self._logit_rows(c)

        def as_long(values: list[int]) -> Tensor:
            return torch.tensor(values, dtype=torch.long, device=device)

        meta = BatchMeta(as_long(write), tuple(multi), as_long(rows), _decode_group(single, device))
        return as_long(tokens), as_long(positions), meta

    @staticmethod
    def _logit_rows(c: _Chunk) -> list[int]:
        if c.request.logits == "all":
            return list(range(c.row, c.row + c.length))
        if c.request.logits == "last" and c.start + c.length == len(c.request.tokens):
            return [c.row + c.length - 1]
        return []

    def _execute(self, tokens: Tensor, positions: Tensor, meta: BatchMeta) -> tuple[Tensor, float]:
        import time

        t0 = time.perf_counter()
        logits = self.engine.model(tokens, positions, meta, self.engine.kv)
        if logits.device.type != "cpu":
            logits = logits.cpu()
        return logits, time.perf_counter() - t0

    def _complete(self, chunks: list[_Chunk], logits: Tensor, meta: BatchMeta) -> None:
        row = 0
        for c in chunks:
            req = c.request
            end = c.start + c.length
            req.seq.commit(req.tokens[c.start : end], req.positions[c.start : end])
            req.done = end
            n_rows = len(self._logit_rows(c))
            if n_rows:
                req.outputs.append(logits[row : row + n_rows])
                row += n_rows
            if req.remaining == 0:
                self._finish(req)


def _decode_group(
    single: list[tuple[int, Tensor, int]], device: torch.device
) -> DecodeGroup | None:
    """Pad the KV slot lists of single-token steps into one [B, L] index (+ mask)."""
    if not single:
        return None
    lengths = [slots.numel() for _, slots, _ in single]
    longest = max(lengths)
    index = torch.zeros(len(single), longest, dtype=torch.long, device=device)
    for i, (_, slots, _) in enumerate(single):
        index[i, : slots.numel()] = slots
    mask = None
    if min(lengths) != longest:
        ar = torch.arange(longest, device=device)
        mask = (ar[None, :] < torch.tensor(lengths, device=device)[:, None])[:, None, None, :]
    rows = torch.tensor([r for r, _, _ in single], dtype=torch.long, device=device)
    return DecodeGroup(rows, index, mask, tuple(i for _, _, i in single))


def attention_layout(
    slots: Tensor, n: int
) -> tuple[tuple[int, int] | None, Tensor | None, tuple[KeyRun, ...]]:
    """How a sequence attends: `(kv_range, mask, runs)`.

    Query i of the n new tokens (the last n of `slots`) sees the keys [0, L - n + i] in the
    sequence's order. Attention reads the pool in place when it can: one contiguous run (plain
    causal), a few runs (merged exactly, e.g. a cached prompt module plus the question), or a
    dense range with a mask hiding other sequences' slots; else the keys are gathered.
    """
    length = slots.numel()
    lo, hi = int(slots.min()), int(slots.max()) + 1
    breaks = (slots[1:] - slots[:-1] != 1).nonzero().flatten().tolist() if length > 1 else []
    if not breaks:
        return (lo, hi), causal_mask(n, length, slots.device), ()
    if len(breaks) < _MAX_RUNS and slots.device.type == "cpu":
        return None, None, _key_runs(slots, n, breaks)
    if hi - lo > _DENSE_RANGE * length:
        return None, causal_mask(n, length, slots.device), ()
    rank = torch.full((hi - lo,), -1, dtype=torch.long, device=slots.device)
    rank[slots - lo] = torch.arange(length, device=slots.device)
    limit = torch.arange(length - n, length, device=slots.device)  # last key each query sees
    return (lo, hi), (rank[None, :] >= 0) & (rank[None, :] <= limit[:, None]), ()


def _key_runs(slots: Tensor, n: int, breaks: list[int]) -> tuple[KeyRun, ...]:
    length = slots.numel()
    first_new = length - n
    bounds = [0, *(b + 1 for b in breaks), length]
    runs = []
    for start, end in itertools.pairwise(bounds):
        lo = int(slots[start])
        if end <= first_new + 1:  # only keys every new token sees
            runs.append(KeyRun(lo, lo + end - start))
            continue
        ranks = torch.arange(start, end, device=slots.device)
        limit = torch.arange(first_new, length, device=slots.device)
        visible = ranks[None, :] <= limit[:, None]  # [n, run]: causal inside the run
        bias = torch.zeros(visible.shape).masked_fill_(~visible, float("-inf"))
        empty = ~visible.any(-1)
        runs.append(KeyRun(lo, lo + end - start, bias, empty if bool(empty.any()) else None))
    return tuple(runs)
