"""A batch run's output: the scores, the topic scores and the serving state, on a
local path or a URL of shared storage."""

from __future__ import annotations

from pathlib import Path

from ..core.engine import EngineState
from ..storage import archive
from ..storage.archive import Location
from .recompute import SCORE_COLUMNS, BatchResult


def write_scores(result: BatchResult, out: str | Path | Location) -> list[Location]:
    """Write the scores (and topic scores, and the serving state when computed) to a
    local path or a URL of shared storage."""
    pa, pq = archive.pyarrow_modules()
    scores = Location.of(out)
    table = {"user_id": pa.array(result.user_ids.tolist(), pa.string())}
    table.update({k: pa.array(result.columns[k]) for k in SCORE_COLUMNS})
    with scores.open_write() as f:
        pq.write_table(pa.table(table), f, compression="zstd")
    written = [scores]
    if result.topics is not None:
        t = result.topics
        stem = scores.name.removesuffix(scores.suffix)
        path = scores.sibling(stem + ".topics.parquet")
        with path.open_write() as f:
            pq.write_table(
                pa.table(
                    {
                        "user_id": pa.array(result.user_ids[t["user"]].tolist(), pa.string()),
                        "topic": pa.array(t["topic"].tolist(), pa.string()),
                        "value": pa.array(t["value"]),
                        "score": pa.array(t["score"]),
                        "percentile": pa.array(t["percentile"]),
                    }
                ),
                f,
            )
        written.append(path)
    if result.state is not None:
        written.append(_write_state(result.state, scores.sibling(scores.name + ".state")))
    return written


def _write_state(state: EngineState, directory: Location) -> Location:
    """A checkpoint of ``state`` in ``directory``: written in place when local (atomic,
    synced), else written locally and copied up whole."""
    from ..storage import checkpoint

    if not directory.is_url:
        return Location.of(checkpoint.write(Path(directory.text), state))
    import tempfile

    with tempfile.TemporaryDirectory() as local:
        written = checkpoint.write(Path(local), state)
        target = directory.join(written.name)
        with open(written, "rb") as source, target.open_write() as f:
            while chunk := source.read(1 << 24):
                f.write(chunk)
    return target


def state_dir(scores: str | Path) -> Path:
    """Where a batch run keeps the state that ``serve --snapshot`` loads."""
    scores = Path(scores)
    return scores.with_name(scores.name + ".state")
