"""A tqdm progress bar that shows the iteration count and the best loss so far."""

from __future__ import annotations

from typing import Any


class Progress:
    """Created only when the user asks for it, so tqdm is imported lazily."""

    def __init__(self, enabled: bool, total: int | None, desc: str) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True)

    def update(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.6g}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
