"""Run output storage: chunks written while a run goes, read back from an offset.

The output of a run is one stream: stdout and stderr merged, decoded as UTF-8 (bytes
that are not UTF-8, and NUL, become U+FFFD). Positions are byte offsets in that stream
as UTF-8, counted from the run's first byte, so they stay valid when the worker drops
the middle of a long output: it keeps the head (the first chunks) and a rolling tail
(deleting older tail chunks), and :func:`read` puts ``[... N bytes omitted ...]``
where the stored chunks leave a gap.

Writes come from the worker that holds the run, fenced: see
:func:`schedd.services.claims.report_output` and :func:`schedd.services.claims.finish`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import Session

from schedd.errors import InvalidInput, NotFound
from schedd.models import RunOutput, RunStatus, TaskRun
from schedd.types import utcnow

DEFAULT_READ_LIMIT = 1_048_576

output_table = RunOutput.__table__  # type: ignore[attr-defined]
runs_table = TaskRun.__table__  # type: ignore[attr-defined]


class Chunk(NamedTuple):
    seq: int  # order of the chunk within the run
    offset: int  # stream position of its first byte
    data: str


@dataclass(frozen=True)
class OutputBatch:
    """What a worker stores in one write: new chunks, and stored tail chunks to drop."""

    chunks: Sequence[Chunk]
    drop: tuple[int, int] | None  # delete chunks with first <= seq <= last
    total: int  # bytes of output the run has produced so far (before the cap)


class OutputSlice(NamedTuple):
    text: str
    next_offset: int  # where the next read continues
    finished: bool  # the run has ended and everything stored has been read


def store(session: Session, run_id: int, batch: OutputBatch) -> None:
    """Insert ``batch.chunks`` and delete the dropped tail chunks (no fence: the caller's)."""
    store_many(session, [(run_id, batch)])


def store_many(session: Session, items: Sequence[tuple[int, OutputBatch]]) -> None:
    """:func:`store` for several runs: the chunks of all of them in one insert."""
    for run_id, batch in items:
        if batch.drop is not None:
            first, last = batch.drop
            session.execute(
                sa.delete(output_table).where(
                    output_table.c.run_id == run_id,
                    output_table.c.seq.between(first, last),
                )
            )
    now = utcnow()
    rows = [
        {"run_id": run_id, "seq": c.seq, "offset": c.offset, "data": c.data, "created_at": now}
        for run_id, batch in items
        for c in batch.chunks
    ]
    if rows:
        session.execute(sa.insert(output_table), rows)


def discard(session: Session, run_ids: Sequence[int]) -> None:
    """Delete all stored output of ``run_ids`` (a handed-back run starts over)."""
    if run_ids:
        session.execute(sa.delete(output_table).where(output_table.c.run_id.in_(run_ids)))


def _utf8_start(data: bytes, index: int) -> int:
    """``index`` moved forward to the start of a character."""
    while index < len(data) and data[index] & 0xC0 == 0x80:
        index += 1
    return index


def _omitted(count: int, before: str) -> str:
    lead = "" if not before or before.endswith("\n") else "\n"
    return f"{lead}[... {count} bytes omitted ...]\n"


MAX_OFFSET = 2**31 - 1


def read(
    session: Session, run_id: int, offset: int = 0, *, limit: int = DEFAULT_READ_LIMIT
) -> OutputSlice:
    """Output of run ``run_id`` from stream position ``offset``, about ``limit`` bytes.

    Call again with ``next_offset`` to follow a running run; ``finished`` turns True
    once the run has ended and nothing more is stored after ``next_offset``. A gap
    (output dropped to keep under the cap) reads as ``[... N bytes omitted ...]``.
    """
    if offset < 0:
        raise InvalidInput(f"offset: must be 0 or more, got {offset}", field="offset")
    if limit < 1:
        raise InvalidInput(f"limit: must be 1 or more, got {limit}", field="limit")
    # The status is read first: chunks a worker stored with the final status are then
    # visible to the chunk query below, so "finished" never hides a last chunk.
    status = session.execute(
        sa.select(runs_table.c.status).where(runs_table.c.id == run_id)
    ).scalar_one_or_none()
    if status is None:
        raise NotFound(f"run {run_id} not found")
    ended = RunStatus(status).terminal
    # Stored offsets are 32-bit: a larger one (past any output) must not reach
    # PostgreSQL as a value its column type cannot hold.
    start_seq = session.execute(
        sa.select(sa.func.max(output_table.c.seq)).where(
            output_table.c.run_id == run_id, output_table.c.offset <= min(offset, MAX_OFFSET)
        )
    ).scalar_one_or_none()
    query = sa.select(output_table.c.offset, output_table.c.data).where(
        output_table.c.run_id == run_id
    )
    if start_seq is not None:
        query = query.where(output_table.c.seq >= start_seq)
    rows = session.execute(query.order_by(output_table.c.seq)).all()

    parts: list[str] = []
    size = 0
    position = offset
    complete = True
    for chunk_offset, data in rows:
        raw = data.encode()
        if chunk_offset + len(raw) <= position:
            continue
        if size >= limit:
            complete = False
            break
        if chunk_offset > position:
            parts.append(_omitted(chunk_offset - position, parts[-1] if parts else ""))
            position = chunk_offset
        start = _utf8_start(raw, position - chunk_offset)
        piece = raw[start:]
        if len(piece) > limit - size:
            # Cut at the next character boundary, always at least one character.
            piece = piece[: _utf8_start(piece, max(1, limit - size))]
            complete = False
        parts.append(piece.decode())
        size += len(piece)
        position = chunk_offset + start + len(piece)
        if not complete:
            break
    return OutputSlice("".join(parts), position, ended and complete)
