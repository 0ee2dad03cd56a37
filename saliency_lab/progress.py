"""A progress bar with rate and ETA for long work (docs/capture.md, "Flags": --quiet); `quiet=True` silences it."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class Progress:
    """Counts finished items on stderr: `done/total [elapsed<ETA, rate] ok=.. error=..`.

    A thin wrapper so callers do not depend on tqdm directly and quiet mode is one flag.
    """

    def __init__(self, total: int, desc: str = "", quiet: bool = False, unit: str = "sample"):
        self.quiet = quiet
        self._bar: Any = None
        if not quiet:
            self._bar = tqdm(
                total=total,
                desc=desc or None,
                unit=unit,
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]{postfix}",
            )

    def update(self, n: int = 1, **counts: int) -> None:
        """Advance by `n`; `counts` are shown beside the bar. No-op when quiet."""
        if self._bar is None:
            return
        if counts:
            self._bar.set_postfix(counts, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        """Close the bar (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
