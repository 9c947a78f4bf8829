"""Output capture: the stored output stays within the cap, keeps head and tail, and is exact."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schedd.services.output import Chunk, OutputBatch
from schedd.worker.capture import RESULT_BYTES, OutputCapture


class Store:
    """What the database holds for one run, kept the way services.output.store keeps it."""

    def __init__(self) -> None:
        self.chunks: dict[int, Chunk] = {}

    def apply(self, batch: OutputBatch) -> None:
        if batch.drop is not None:
            first, last = batch.drop
            for seq in [s for s in self.chunks if first <= s <= last]:
                del self.chunks[seq]
        for chunk in batch.chunks:
            assert chunk.seq not in self.chunks, "a sequence number was reused"
            self.chunks[chunk.seq] = chunk

    def size(self) -> int:
        return sum(len(c.data.encode()) for c in self.chunks.values())

    def ordered(self) -> list[Chunk]:
        return [self.chunks[seq] for seq in sorted(self.chunks)]


def flush(capture: OutputCapture, store: Store) -> None:
    batch = capture.pending()
    if batch is not None:
        store.apply(batch)
        capture.stored(batch)


@settings(max_examples=150, deadline=None)
@given(
    cap=st.integers(min_value=64, max_value=20_000),
    pieces=st.lists(st.binary(min_size=0, max_size=3000), max_size=40),
    flush_every=st.integers(min_value=1, max_value=5),
    fail_every=st.integers(min_value=0, max_value=4),
)
def test_stored_output_is_exact_within_the_cap_with_head_and_tail(
    cap: int, pieces: list[bytes], flush_every: int, fail_every: int
) -> None:
    capture = OutputCapture(cap, chunk_bytes=256)
    store = Store()
    for index, piece in enumerate(pieces):
        capture.write(piece)
        if index % flush_every == 0:
            if fail_every and index % fail_every == 0:
                capture.pending()  # taken, but the database write failed
            else:
                flush(capture, store)
    capture.close()
    flush(capture, store)

    stream = b"".join(pieces).decode(errors="replace").replace("\x00", "\ufffd").encode()
    assert capture.total == len(stream)
    assert store.size() <= cap
    chunks = store.ordered()
    for chunk in chunks:  # every stored chunk is the stream at its offset
        data = chunk.data.encode()
        assert stream[chunk.offset : chunk.offset + len(data)] == data
    offsets = [c.offset for c in chunks]
    assert offsets == sorted(offsets)
    if stream:
        assert chunks[0].offset == 0  # the head is kept
        last = chunks[-1]
        assert last.offset + len(last.data.encode()) == len(stream)  # and the tail
    if len(stream) <= cap:
        assert "".join(c.data for c in chunks).encode() == stream  # nothing dropped


def test_a_character_split_between_writes_is_decoded_whole() -> None:
    capture = OutputCapture(1000)
    data = "grüße €\n".encode()
    for index in range(len(data)):
        capture.write(data[index : index + 1])
    capture.close()
    batch = capture.pending()
    assert batch is not None
    assert "".join(c.data for c in batch.chunks) == "grüße €\n"


def test_undecodable_bytes_and_nul_become_replacement_characters() -> None:
    capture = OutputCapture(1000)
    capture.write(b"ok \xff\xfe nul:\x00 end\xe2\x82")
    capture.close()
    batch = capture.pending()
    assert batch is not None
    assert "".join(c.data for c in batch.chunks) == "ok \ufffd\ufffd nul:\ufffd end\ufffd"


def test_result_is_a_short_tail_from_a_line_start() -> None:
    capture = OutputCapture(1_000_000)
    for number in range(1000):
        capture.write(f"line {number}\n".encode())
    result = capture.result()
    assert len(result.encode()) <= RESULT_BYTES
    assert result.endswith("line 999\n")
    assert result.startswith("line ")


def test_nothing_new_means_nothing_to_store() -> None:
    capture = OutputCapture(1000)
    capture.write(b"x")
    flush(capture, Store())
    assert capture.pending() is None
