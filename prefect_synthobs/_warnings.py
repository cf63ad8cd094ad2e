"""One warning per fault: said when it starts, said again only after it cleared."""

from __future__ import annotations

import logging
from typing import Any


class WarnOnce:
    """Logs a fault's first occurrence only; ``ok()`` re-arms it.

    Args:
        logger: Where the warning goes.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.failing = False

    def fail(self, message: str, *args: Any) -> None:
        """Record a fault; warn if it is a new one."""
        if not self.failing:
            self.logger.warning(message, *args)
        self.failing = True

    def ok(self) -> bool:
        """Record a success; returns whether a fault just cleared."""
        cleared, self.failing = self.failing, False
        return cleared
