"""What a ``with`` block closes at its end: the library, its background writer, a frame being
read."""

from __future__ import annotations

from abc import ABC
from abc import abstractmethod
from typing import Self


class Closeable(ABC):
    """Holds something (a file, a lock, a thread) until :meth:`close`; ``with x:`` closes ``x``
    when the block ends, by an exception too."""

    @abstractmethod
    def close(self) -> None:
        """Release what the object holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
