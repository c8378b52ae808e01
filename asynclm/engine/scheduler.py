"""The scheduler: gathers forward work from all contexts into one ragged batch.

There is no background task. Whoever submits work while no batch is running becomes the
leader: it waits a few event-loop turns so other contexts can add their steps, lets the policy
form a batch (`BatchPolicy`: decode steps first, prefill chunks up to a token budget), has the
runner run it on a worker thread (the event loop stays free for tools), resolves every request
in the batch and hands leadership on. Work of a cancelled caller is dropped; a failing forward
fails its batch and gives the reserved slots back. Work that finds the KV pool short of pages
stays queued while others run (and release their contexts), as long as the policy says it may
wait; then it fails with a `PoolExhaustedError` that says how long it waited.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
from torch import Tensor

from asynclm.engine.pages import PagePool, PoolExhaustedError
from asynclm.engine.policy import BatchPolicy, Chunk
from asynclm.engine.request import ForwardRequest
from asynclm.engine.runner import ModelRunner, PreparedBatch
from asynclm.engine.scope import QuotaExceededError

_GATHER_ROUNDS = 4
_POOL_POLL_SECONDS = 0.01  # how often work waiting for pages looks again when nothing runs


@dataclass(slots=True)
class BatchStats:
    """Counters for benchmarks and tests."""

    batches: int = 0
    tokens: int = 0
    max_sequences: int = 0
    model_seconds: float = 0.0

    def record(self, batch: PreparedBatch, num_sequences: int, seconds: float) -> None:
        self.batches += 1
        self.tokens += batch.num_tokens
        self.max_sequences = max(self.max_sequences, num_sequences)
        self.model_seconds += seconds


class Scheduler:
    """Runs every context's forward work in shared batches.

    Args:
        pool: The KV page pool requests reserve their slots in.
        runner: Turns batches into tensors and runs the model.
        policy: What runs next and how much (default `BatchPolicy()`); may be replaced.
    """

    def __init__(
        self, pool: PagePool, runner: ModelRunner, policy: BatchPolicy | None = None
    ) -> None:
        self.pool = pool
        self.runner = runner
        self.policy = policy or BatchPolicy()
        self.stats = BatchStats()
        self._queue: list[ForwardRequest] = []
        self._waiting_since: dict[ForwardRequest, float] = {}  # work short of KV pages
        self._busy = False
        self._batch_done: anyio.Event | None = None

    @property
    def num_pending(self) -> int:
        """Requests waiting or running."""
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
                elif not await self._lead() and not request.finished:
                    await anyio.sleep(_POOL_POLL_SECONDS)  # all queued work waits for pages
        finally:
            self._waiting_since.pop(request, None)
            if not request.finished:  # cancelled: drop whatever was not computed yet
                self._queue.remove(request)
                request.finished = True
        return request.result()

    async def _wait_for_batch(self) -> None:
        if self._batch_done is None:
            self._batch_done = anyio.Event()
        await self._batch_done.wait()

    async def _lead(self) -> bool:
        """Form and run one batch; whether there was anything to run."""
        self._busy = True
        try:
            await self._gather()
            chunks = self.policy.form_batch(self._queue, self._reserve)
            if chunks:
                with anyio.CancelScope(shield=True):
                    await self._run(chunks)
            return bool(chunks)
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

    def _reserve(self, req: ForwardRequest, n: int) -> bool:
        """Take KV slots for n tokens of the request; or leave it waiting for pages, or fail it
        cleanly (nothing taken either way)."""
        try:
            plan = req.seq.reserve(self.pool, n)
        except QuotaExceededError as e:
            self._finish(req, e)
            return False
        except PoolExhaustedError as e:
            self._short_of_pages(req, n, e)
            return False
        self._waiting_since.pop(req, None)
        if plan.copies:
            self.runner.copy_pages(plan.copies)
        return True

    def _short_of_pages(self, req: ForwardRequest, n: int, error: PoolExhaustedError) -> None:
        now = time.monotonic()
        waited = now - self._waiting_since.setdefault(req, now)
        pages = req.seq.table.pages_needed(self.pool, n)
        held, total = req.seq.num_pages, self.pool.num_pages
        if self.policy.should_wait(
            pages_needed=pages, pages_held=held, pool_pages=total, waited=waited
        ):
            return
        if pages > total - held:
            reason = "the pool could not hold it even if every other context released its pages"
        else:
            reason = f"waited {waited:.1f} s for other contexts to release pages"
        self._finish(req, PoolExhaustedError(f"{error}: {reason}"))

    async def _run(self, chunks: list[Chunk[ForwardRequest]]) -> None:
        batch = self.runner.prepare(chunks)
        try:
            logits, seconds = await self.runner.run(batch)
        except Exception as e:  # the model failed: give the reserved slots back
            for c in chunks:
                c.request.seq.truncate(self.pool, c.request.seq.num_tokens)
                self._finish(c.request, e)
            return
        self._complete(chunks, logits, batch.logit_counts)
        self.stats.record(batch, len(chunks), seconds)

    def _complete(
        self, chunks: list[Chunk[ForwardRequest]], logits: Tensor, counts: tuple[int, ...]
    ) -> None:
        row = 0
        whole = len(chunks) == 1 and logits.shape[0] == counts[0]  # every row: no slice
        for c, n_rows in zip(chunks, counts, strict=True):
            req = c.request
            req.seq.commit(req.tokens[c.start : c.end], req.positions[c.start : c.end])
            req.done = c.end
            if n_rows:
                req.outputs.append(logits if whole else logits[row : row + n_rows])
                row += n_rows
            if req.remaining == 0:
                self._finish(req)

    def _finish(self, req: ForwardRequest, error: BaseException | None = None) -> None:
        self._waiting_since.pop(req, None)
        req.error = error
        req.finished = True
        if req in self._queue:
            self._queue.remove(req)
