from collections.abc import Callable
from typing import Any

class Builder:
    def __init__(self, request: tuple[bytes, ...], model_data: tuple[bytes, ...], output: tuple[bytes, ...],
                 parent_tag: tuple[bytes, ...], tags: tuple[bytes, ...], named_tags: tuple[bytes, ...],
                 error: tuple[bytes, ...], sample: tuple[bytes, ...], streams: dict[str, tuple[bytes, int]],
                 inline_limit: int) -> None: ...
    def rows(self, rows: list[tuple[Any, ...]], pending: dict[Any, Any],
             fallback: Callable[[tuple[Any, ...]], list[bytes]], pause: Callable[[], None] | None,
             on_error: Callable[[], None] | None, every: int) -> list[bytes]: ...
