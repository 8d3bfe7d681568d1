"""Topic names: the one rule that makes two spellings of a topic the same topic.

Every topic that enters the service (endorsements, retractions, reads, archives) goes
through ``normalize_topic``, so "Python", "python " and "ｐｙｔｈｏｎ" (full-width) are one
topic and a look-alike spelling cannot squat a ranking of its own.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np


def normalize_topic(topic: str) -> str:
    """Unicode NFKC, case-folded, trimmed of whitespace; idempotent.

    Case folding can leave a string that NFKC would change again (and NFKC one that
    folding would), so the result is NFKC of the folded NFKC form, as Unicode's
    NFKC_Casefold is; trimming comes last, after compatibility spaces became spaces.
    """
    if topic.isascii():  # the common case, without the Unicode tables
        return topic.lower().strip()
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", topic).casefold())
    return folded.strip()


def normalize_topics(names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Normalise a list of topic names, merging those that become equal: the distinct
    normalised names (in order of first appearance) and, per input name, its index
    among them."""
    distinct: dict[str, int] = {}
    index = [distinct.setdefault(normalize_topic(name), len(distinct)) for name in names]
    return list(distinct), np.asarray(index, np.int64)
