from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

class Printer:
    def __init__(self, fallback: Callable[..., None], stdout: Any, write_through: Callable[[str], Any],
                 rows: list[tuple[Any, ...]], held: dict[int, tuple[Any, ...]], monitor: Any, processor: Any,
                 operation: ContextVar[Any], large: int) -> None: ...
    def __call__(self, *values: Any, sep: str | None = None, end: str | None = None, file: Any = None,
                 flush: bool = False) -> None: ...

class Recorder:
    def __init__(self, fallback: Callable[..., None], rows: list[tuple[Any, ...]], monitor: Any, processor: Any,
                 names_and_urls: dict[tuple[Any, ...], tuple[str, str]], inline_limit: int) -> None: ...
    def __call__(self, *facts: Any) -> None: ...
