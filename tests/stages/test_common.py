"""The stages' shared writer loop: rows reach the file in bounded chunks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facecli.stages.common import CHUNK_ROWS, stream_table


@dataclass
class Rows:  # the part of a FaceTable that stream_table uses
    face_id: np.ndarray

    def __len__(self) -> int:
        return len(self.face_id)

    @classmethod
    def concat(cls, parts: list["Rows"]) -> "Rows":
        return cls(np.concatenate([p.face_id for p in parts]))


class Writer:
    def __init__(self) -> None:
        self.writes: list[int] = []
        self.rows = 0

    def write(self, rows: Rows) -> None:
        self.writes.append(len(rows))
        self.rows += len(rows)


def test_batches_without_frames_are_written_as_they_come():
    """A stage reading its rows back from a file gets whole batches, not frames: each batch is
    written before the next is held (reconstruct and classify held the whole table before)."""
    batch = CHUNK_ROWS + 200
    writer = Writer()
    stats = stream_table(((None, Rows(np.full(batch, i % 2))) for i in range(5)), writer, None, None)
    assert writer.writes == [batch] * 5 and stats.rows == 5 * batch and stats.faces == 2 and stats.frames == 0


def test_small_items_are_gathered_up_to_a_chunk():
    writer = Writer()
    stream_table(((None, Rows(np.zeros(2, int))) for _ in range(CHUNK_ROWS)), writer, None, None)
    assert writer.writes == [CHUNK_ROWS] * 2  # 2 rows an item: a write every CHUNK_ROWS / 2 items
