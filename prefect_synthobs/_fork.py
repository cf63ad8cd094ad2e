"""Objects a forked child must not share with its parent: reset in the child, right after ``fork``.

A child has none of its parent's threads, but it has their locks (perhaps held at the fork, by a thread
that will never release them there) and their file descriptors. An object holding such things registers
once (``reset_in_child``); its ``_after_fork_in_child`` then runs in every forked child, before the child
runs anything else. The registry holds weak references: an object that is gone is never reset.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

from prefect_synthobs._log import get_logger

__all__ = ["ForkResettable", "reset_in_child"]


class ForkResettable(Protocol):
    def _after_fork_in_child(self) -> None:
        """Start afresh in a forked child (new locks; no parent's thread, queue or descriptor). Never raises."""


_REGISTERED: weakref.WeakSet[ForkResettable] = weakref.WeakSet()


def reset_in_child(obj: ForkResettable) -> None:
    """Have ``obj._after_fork_in_child()`` run in every child this process forks from now on."""
    _REGISTERED.add(obj)


def _after_fork() -> None:
    for obj in list(_REGISTERED):
        try:
            obj._after_fork_in_child()
        except Exception as exc:  # one object's reset never keeps the others' from running
            get_logger().debug("synthobs: %s could not start afresh in a forked child: %s", type(obj).__name__, exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
