"""Typed Python clients for scoresvc.v1.ScoreService, blocking and asyncio.

    with ScoreClient("127.0.0.1:50051") as client:
        done = client.endorse("ana", "bo", "python")
        print(client.score("bo", "python", min_sequence=done.sequence).score)

Results are the domain's own types (``scoresvc.core.results``, with ``scoresvc.core.model``'s
enums), the ones the in-process engine returns. Every failed call raises
``ScoreServiceError``. This package loads the generated stubs and the domain's
vocabulary only, never the engine.
"""

from .aio import AsyncScoreClient
from .errors import ScoreServiceError
from .requests import InteractionRow
from .sync import ScoreClient

__all__ = ["AsyncScoreClient", "InteractionRow", "ScoreClient", "ScoreServiceError"]
