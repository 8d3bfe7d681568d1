"""``scoresvc export``, ``import`` and ``batch``: a data directory's events to and
from an archive, and every score recomputed from one on Dask."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ..batch import output as batch_output
from ..batch import recompute as batch
from ..storage import archive, checkpoint
from ..storage import history as score_history
from ..storage.store import DB_NAME, Store
from . import flags
from .errors import Failed, UsageError
from .logs import log
from .serving import empty_data_dir

DISTRIBUTED_EXTRA = "pip install 'scoresvc[distributed]' (or '.[distributed]' in a checkout)"


class _ProgressBars:
    """A tqdm bar per table for export and import, on stderr when it is a terminal;
    otherwise a log line per table as it completes."""

    def __init__(self, verb: str) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._verb = verb
        self._bars: dict[str, Any] = {}
        self._plain = not sys.stderr.isatty()

    def __call__(self, table: str, done: int, total: int) -> None:
        if self._plain:
            if done == total:
                log.info("%s %s: %d rows", self._verb, table, done)
            return
        bar = self._bars.get(table)
        if bar is None:
            bar = self._tqdm(
                desc=f"{self._verb} {table}",
                total=total if total >= 0 else None,
                unit=" rows",
                unit_scale=True,
                file=sys.stderr,
                mininterval=0.5,
            )
            self._bars[table] = bar
        bar.update(done - bar.n)
        if total >= 0 and bar.total != total:
            bar.total = total
            bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def export_(args: argparse.Namespace) -> int:
    """Export every event of a data directory (a running server may keep serving)."""
    engine = flags.engine(args)
    if not (Path(args.data_dir) / DB_NAME).exists():
        raise Failed(f"--data-dir {args.data_dir}: no scoresvc data directory there")
    with Store(args.data_dir, read_only=True) as store:
        store.load_into(engine)
    bars = _ProgressBars("export")
    try:
        manifest = archive.export(engine, args.out, args.format, bars)
    finally:
        bars.close()
    rows = ", ".join(f"{t['rows']:,} {name}" for name, t in manifest["tables"].items())
    points = score_history.export_to(
        Path(args.data_dir) / score_history.HISTORY_DIR, Path(args.out)
    )
    log.info(
        "exported write %d to %s: %s; %d score history points",
        manifest["sequence"],
        args.out,
        rows,
        points,
    )
    return 0


def import_(args: argparse.Namespace) -> int:
    """Import an archive into a new data directory, or one that holds no events (no
    server may be running on it). The archive is read into memory first and becomes
    the directory's first checkpoint: a failed import writes nothing."""
    engine = flags.engine(args)
    refusal = "import only into a new data directory, or one that holds no events"
    with empty_data_dir(args.data_dir, args.durability, refusal) as store:
        bars = _ProgressBars("import")
        try:
            applied = archive.import_into(engine, args.input, bars)
        finally:
            bars.close()
        if engine.sequence:
            checkpoint.write(store.checkpoint_dir, engine.state())
        points = score_history.import_from(Path(args.input), store.path / score_history.HISTORY_DIR)
    log.info(
        "imported %d events from %s into %s (writes 1-%d); %d score history points",
        applied,
        args.input,
        args.data_dir,
        engine.sequence,
        points,
    )
    return 0


def batch_(args: argparse.Namespace) -> int:
    """Recompute every score from an archive on Dask distributed."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(f"batch needs Dask: {DISTRIBUTED_EXTRA}") from None
    from tqdm import tqdm

    # Dask's own INFO lines (each worker joining and leaving) are not ours to print.
    quiet = max(logging.WARNING, logging.getLogger().level)
    logging.getLogger("distributed").setLevel(quiet)
    as_of = args.as_of if args.as_of is not None else time.time()
    steps = tqdm(
        desc="batch",
        unit=" steps",
        file=sys.stderr,
        mininterval=0.5,
        disable=not sys.stderr.isatty(),
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(steps.close)
        if args.scheduler:
            client = cleanup.enter_context(Client(args.scheduler))
        else:
            cluster = cleanup.enter_context(
                LocalCluster(
                    n_workers=args.local_workers,
                    threads_per_worker=1,
                    dashboard_address=":0",
                    silence_logs=quiet,
                )
            )
            client = cleanup.enter_context(Client(cluster))

        def progress(message: str) -> None:
            steps.set_postfix_str(message)
            steps.update()
            log.info("%s", message)

        result = batch.run(
            client,
            args.input,
            as_of,
            flags.params(args),
            tolerance=args.tolerance,
            topics=args.topics,
            state=True,
            progress=progress,
        )
        written = batch_output.write_scores(result, args.out)
    log.info(
        "%d users scored at %s in %.1f s (%d iterations): %s",
        len(result.user_ids),
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(as_of)),
        result.seconds,
        result.iterations,
        ", ".join(str(w) for w in written),
    )
    return 0
