"""KV page bookkeeping: a refcounted page pool and per-context page tables.

No torch here: this is pure accounting, tested on its own. The engine turns the slots and
copy-on-write pairs it returns into tensor operations on the KV pool.

A page table lists pages and how many slots of each are in use. Pages may be shared between
tables (fork, exports, Prompt Cache modules); a shared page is never written: appending to a table
whose last page is shared first copies it (copy-on-write), so sharing is always safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class PoolExhaustedError(MemoryError):
    """The KV page pool has too few free pages for a request; nothing was changed."""


class PagePool:
    """A fixed number of pages with reference counts."""

    def __init__(self, num_pages: int, page_size: int) -> None:
        if num_pages < 1 or page_size < 1:
            raise ValueError(
                f"need num_pages >= 1 and page_size >= 1, got {num_pages}, {page_size}"
            )
        self.num_pages = num_pages
        self.page_size = page_size
        self._refcounts = [0] * num_pages
        self._free = list(range(num_pages - 1, -1, -1))  # stack: pop() yields low pages first

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_pages - len(self._free)

    def refcount(self, page: int) -> int:
        return self._refcounts[page]

    def require(self, n: int) -> None:
        """Raise `PoolExhaustedError` unless n pages are free."""
        if n > len(self._free):
            raise PoolExhaustedError(
                f"KV pool exhausted: {n} pages requested, {len(self._free)} of "
                f"{self.num_pages} free (page size {self.page_size} tokens)"
            )

    def allocate(self, n: int) -> list[int]:
        """n fresh pages with refcount 1, or `PoolExhaustedError` (and no change)."""
        self.require(n)
        pages = [self._free.pop() for _ in range(n)]
        for p in pages:
            self._refcounts[p] = 1
        return pages

    def retain(self, pages: list[int]) -> None:
        for p in pages:
            if self._refcounts[p] <= 0:
                raise ValueError(f"page {p} is not allocated")
            self._refcounts[p] += 1

    def release(self, pages: list[int]) -> None:
        freed = []
        for p in pages:
            if self._refcounts[p] <= 0:
                raise ValueError(f"page {p} released more often than retained")
            self._refcounts[p] -= 1
            if self._refcounts[p] == 0:
                freed.append(p)
        # Highest first onto the stack, so the next allocation takes them in ascending order:
        # a context then gets contiguous, in-order slots that attention can read in place.
        self._free.extend(sorted(freed, reverse=True))


@dataclass(slots=True)
class AppendPlan:
    """What the engine must do before writing n new tokens: copy pages, then write at slots."""

    slots: list[int]
    copies: list[tuple[int, int]]  # (source page, destination page)


@dataclass(slots=True)
class PageTable:
    """The pages of one context (or export), in order, with the used slots of each."""

    page_size: int
    pages: list[int] = field(default_factory=list)
    fills: list[int] = field(default_factory=list)
    _slots: list[int] | None = None

    @property
    def num_tokens(self) -> int:
        return sum(self.fills)

    @property
    def num_pages(self) -> int:
        return len(self.pages)

    @property
    def slots(self) -> list[int]:
        """The KV slot of every token, in order."""
        if self._slots is None:
            ps = self.page_size
            self._slots = [
                p * ps + i for p, f in zip(self.pages, self.fills, strict=True) for i in range(f)
            ]
        return self._slots

    def pages_needed(self, pool: PagePool, n: int) -> int:
        """Fresh pages an append of n tokens takes (copy-on-write included)."""
        if n <= 0:
            return 0
        room, cow = self._tail_room(pool)
        return cow + -(-max(0, n - room) // self.page_size)

    def plan_append(self, pool: PagePool, n: int) -> AppendPlan:
        """Reserve slots for n new tokens; all or nothing."""
        pool.require(self.pages_needed(pool, n))
        plan = AppendPlan(slots=[], copies=[])
        if n <= 0:
            return plan
        room, cow = self._tail_room(pool)
        if cow:
            old = self.pages[-1]
            new = pool.allocate(1)[0]
            plan.copies.append((old, new))
            pool.release([old])
            self.pages[-1] = new
            self._slots = None
        remaining = n
        if room:
            take = min(room, remaining)
            base = self.pages[-1] * self.page_size + self.fills[-1]
            plan.slots.extend(range(base, base + take))
            self.fills[-1] += take
            remaining -= take
        while remaining:
            page = pool.allocate(1)[0]
            take = min(self.page_size, remaining)
            plan.slots.extend(range(page * self.page_size, page * self.page_size + take))
            self.pages.append(page)
            self.fills.append(take)
            remaining -= take
        if self._slots is not None:
            self._slots.extend(plan.slots)
        return plan

    def _tail_room(self, pool: PagePool) -> tuple[int, int]:
        """(free slots in the last page, 1 if writing there needs a copy first)."""
        if not self.pages or self.fills[-1] >= self.page_size:
            return 0, 0
        shared = pool.refcount(self.pages[-1]) > 1
        return self.page_size - self.fills[-1], int(shared)

    def share(self, pool: PagePool) -> PageTable:
        """A new table over the same pages (refcounts taken)."""
        pool.retain(self.pages)
        return PageTable(self.page_size, list(self.pages), list(self.fills))

    def fresh_pages_to_share(self, start: int, end: int) -> int:
        """Fresh pages `share_range(start, end)` takes: 1 when the range starts inside a page."""
        first = 0
        for fill in self.fills:
            if first < start < first + fill:
                return int(start < end)
            first += fill
        return 0

    def share_range(
        self, pool: PagePool, start: int, end: int
    ) -> tuple[PageTable, list[tuple[int, int]]]:
        """A new table over tokens [start, end) of this one, and the slots to copy into it.

        Pages the range covers from their first slot are shared. A page's used slots always
        start at its first slot, so when the range starts inside a page, that page's part of
        the range goes to a fresh page: the caller copies the returned (source, destination)
        slot pairs. All or nothing: `PoolExhaustedError` (and no change) if no page is free.
        """
        if not 0 <= start <= end <= self.num_tokens:
            raise ValueError(f"no token range [{start}, {end}) in a table of {self.num_tokens}")
        table, copies, first = PageTable(self.page_size), [], 0
        for page, fill in zip(self.pages, self.fills, strict=True):
            lo, hi = max(start, first), min(end, first + fill)
            if lo < hi and lo == first:
                table.pages.append(page)
                table.fills.append(hi - first)
            elif lo < hi:  # the range starts inside this page: copy its part
                (fresh,) = pool.allocate(1)
                base, dst = page * self.page_size - first, fresh * self.page_size
                copies += [(base + i, dst + i - lo) for i in range(lo, hi)]
                table.pages.append(fresh)
                table.fills.append(hi - lo)
            first += fill
        pool.retain(table.pages[1:] if copies else table.pages)
        return table, copies

    def extend(self, pool: PagePool, other: PageTable) -> None:
        """Append another table's pages (shared, not copied): KV concatenation."""
        if other.page_size != self.page_size:
            raise ValueError("page tables of different page sizes cannot be joined")
        pool.retain(other.pages)
        if self._slots is not None:
            self._slots.extend(other.slots)
        self.pages.extend(other.pages)
        self.fills.extend(other.fills)

    def truncate(self, pool: PagePool, n: int) -> None:
        """Keep the first n tokens; pages left empty are released."""
        if n < 0 or n > self.num_tokens:
            raise ValueError(f"cannot truncate {self.num_tokens} tokens to {n}")
        kept, count = 0, 0
        while kept < len(self.pages) and count + self.fills[kept] <= n:
            count += self.fills[kept]
            kept += 1
        if count < n:  # n falls inside page `kept`
            self.fills[kept] = n - count
            kept += 1
        pool.release(self.pages[kept:])
        del self.pages[kept:], self.fills[kept:]
        if self._slots is not None:
            del self._slots[n:]

    def release(self, pool: PagePool) -> None:
        pool.release(self.pages)
        self.pages.clear()
        self.fills.clear()
        self._slots = None
