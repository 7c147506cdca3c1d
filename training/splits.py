"""Splits by region (or set): whole regions go to validation and test, never single images or
chips (neighbouring pixels leak). Light: no GDAL, so a GPU machine can import it."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence

from training.errors import DatasetError

log = logging.getLogger(__name__)


def assign_splits(
    regions: Iterable[str],
    *,
    val: Sequence[str] | float,
    test: Sequence[str] | float,
    seed: int = 0,
    what: str = "region",
) -> dict[str, str]:
    """Region -> ``train``/``val``/``test``: named regions as listed, else shares of the
    regions drawn with ``seed``.

    Raises:
        DatasetError: a named region does not exist, or is named for both val and test.
    """
    names = sorted(set(regions))
    out = {r: "train" for r in names}
    rng = random.Random(seed)
    pool = names[:]
    rng.shuffle(pool)
    for which, spec in (("test", test), ("val", val)):
        if isinstance(spec, (int, float)):
            n = round(spec * len(names))
            if spec > 0 and n == 0 and len(names) >= 3:
                n = 1
            chosen = [r for r in pool if out[r] == "train"][:n]
        else:
            unknown = [r for r in spec if r not in out]
            if unknown:
                raise DatasetError(
                    f"split.{which}: unknown {what}(s) {unknown}; {what}s are {names}"
                )
            clash = [r for r in spec if out[r] != "train"]
            if clash:
                raise DatasetError(f"split.{which}: {what}(s) {clash} already in another split")
            chosen = list(spec)
        for r in chosen:
            out[r] = which
    log.info("splits by %s: %s", what, out)
    return out
