"""A run's output on its way to storage, bounded in memory and in the database.

The executor's thread writes raw bytes; the worker's monitor takes a batch about once a
second (:meth:`OutputCapture.pending`), stores it fenced, and confirms it
(:meth:`OutputCapture.stored`). A failed store is simply taken again, newer, next time.

The cap (``worker.max_output_bytes``) keeps the head and the tail: the first half of the
budget holds the first bytes and is never dropped; the rest of the budget is a rolling
window of the latest bytes, stored in chunks of at most ``chunk`` bytes, the oldest
deleted when new ones would take the stored output over the cap. Output within the cap
is stored whole. Memory is bounded the same way, so a task printing 50 MB costs a few
megabytes at most.
"""

from __future__ import annotations

import codecs
import threading
from collections import deque
from collections.abc import Iterator

from schedd.services.output import Chunk, OutputBatch

CHUNK_BYTES = 65_536
RESULT_BYTES = 2048  # TaskRun.result: a short tail of the output


def _char_start(data: bytes | bytearray, index: int) -> int:
    """``index`` moved forward to the start of a UTF-8 character."""
    while index < len(data) and data[index] & 0xC0 == 0x80:
        index += 1
    return index


def _char_end(data: bytes | bytearray, index: int) -> int:
    """``index`` moved back so that ``data[:index]`` ends on a whole character."""
    while 0 < index < len(data) and data[index] & 0xC0 == 0x80:
        index -= 1
    return index


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in pieces of about ``size`` bytes, split between characters."""
    start = 0
    while start < len(data):
        end = _char_end(data, min(start + size, len(data)))
        if end <= start:  # a character longer than size: take it whole
            end = _char_start(data, start + 1)
        yield data[start:end]
        start = end


class OutputCapture:
    """Collects a run's output; thread-safe. See the module docstring."""

    def __init__(self, max_bytes: int, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        head = max_bytes // 2
        self.cap = max_bytes
        # Small chunks let the tail window move in small steps (it drops whole chunks).
        self.chunk = max(1, min(chunk_bytes, (max_bytes - head) // 8))
        self._lock = threading.Lock()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._closed = False
        self._total = 0  # stream bytes seen
        self._head_left = head  # head budget not yet used
        self._head_limit: int | None = None  # stream position where the head ended
        self._head = bytearray()  # head bytes not yet stored
        self._head_stored = 0  # head bytes stored
        self._tail = bytearray()  # the newest bytes not yet stored; ends at _total
        self._result = bytearray()
        self._next_seq = 0
        self._stored_tail: deque[tuple[int, int]] = deque()  # (seq, size) of tail chunks
        self._stored_tail_bytes = 0
        self._reported_total = 0
        self._result_override: str | None = None

    @property
    def total(self) -> int:
        return self._total

    def write(self, data: bytes) -> None:
        with self._lock:
            if not self._closed:
                self._add(self._decoder.decode(data))

    def close(self) -> None:
        """No more output: an incomplete last character becomes U+FFFD."""
        with self._lock:
            if not self._closed:
                self._add(self._decoder.decode(b"", final=True))
                self._closed = True

    def _add(self, text: str) -> None:
        if not text:
            return
        data = text.replace("\x00", "\ufffd").encode()
        self._total += len(data)
        self._result += data[-2 * RESULT_BYTES :]
        if len(self._result) > 2 * RESULT_BYTES:
            del self._result[: -2 * RESULT_BYTES]
        if self._head_limit is None:
            cut = _char_end(data, min(self._head_left, len(data)))
            self._head += data[:cut]
            self._head_left -= cut
            data = data[cut:]
            if data or self._head_left == 0:
                self._head_limit = self._total - len(data)
        if data:
            self._tail += data
            # Trim in steps rather than on every write: dropping the front of a
            # bytearray moves everything behind it.
            if len(self._tail) > 2 * self._tail_budget() + self.chunk:
                self._trim_tail()

    def _tail_budget(self) -> int:
        """What the tail may hold: the cap less the head (final once the tail starts)."""
        return self.cap - self._head_stored - len(self._head)

    def _trim_tail(self) -> None:
        excess = len(self._tail) - self._tail_budget()
        if excess > 0:
            del self._tail[: _char_start(self._tail, excess)]

    def pending(self) -> OutputBatch | None:
        """What to store now, or None when there is nothing new."""
        with self._lock:
            self._trim_tail()
            chunks: list[Chunk] = []
            seq = self._next_seq
            position = self._head_stored
            for piece in _pieces(bytes(self._head), self.chunk):
                chunks.append(Chunk(seq, position, piece.decode()))
                seq += 1
                position += len(piece)
            position = self._total - len(self._tail)
            for piece in _pieces(bytes(self._tail), self.chunk):
                chunks.append(Chunk(seq, position, piece.decode()))
                seq += 1
                position += len(piece)
            # The oldest stored tail chunks make room for the new ones.
            excess = self._stored_tail_bytes + len(self._tail) - self._tail_budget()
            dropped: list[int] = []
            for stored_seq, size in self._stored_tail:
                if excess <= 0:
                    break
                dropped.append(stored_seq)
                excess -= size
            if not chunks and not dropped and self._total == self._reported_total:
                return None
            drop = (dropped[0], dropped[-1]) if dropped else None
            return OutputBatch(tuple(chunks), drop, self._total)

    def stored(self, batch: OutputBatch) -> None:
        """``batch`` (from :meth:`pending`) is durably stored: forget what it held."""
        with self._lock:
            head_bytes = 0
            for chunk in batch.chunks:
                size = len(chunk.data.encode())
                if self._head_limit is None or chunk.offset < self._head_limit:
                    head_bytes += size
                else:
                    self._stored_tail.append((chunk.seq, size))
                    self._stored_tail_bytes += size
            if batch.chunks:
                self._next_seq = batch.chunks[-1].seq + 1
            del self._head[:head_bytes]
            self._head_stored += head_bytes
            # Everything up to batch.total is stored now; newer bytes stay.
            already = batch.total - (self._total - len(self._tail))
            if already > 0:
                del self._tail[:already]
            if batch.drop is not None:
                while self._stored_tail and self._stored_tail[0][0] <= batch.drop[1]:
                    self._stored_tail_bytes -= self._stored_tail.popleft()[1]
            self._reported_total = batch.total

    def set_result(self, text: str) -> None:
        """Show ``text`` (a function's return value) as the run's result, not the tail."""
        with self._lock:
            self._result_override = text[:RESULT_BYTES]

    def result(self) -> str:
        """The last ~2 KB of output, from the start of a line when one is near (or what
        :meth:`set_result` gave)."""
        with self._lock:
            if self._result_override is not None:
                return self._result_override
            data = bytes(self._result[-RESULT_BYTES:])
            cut_short = self._total > len(data)
        start = _char_start(data, 0)
        if cut_short:
            newline = data.find(b"\n", start, start + 200)
            if newline != -1:
                start = newline + 1
        return data[start:].decode()
