"""What a user sees of an exception raised in their own code: their frames, not ours.

An error in ``score.py`` (or an example's ``train.py``) travels through scorewatch, the import machinery,
``concurrent.futures`` and inference-schema's wrappers before it is reported. Those frames say nothing
to the script's author, so the leading ones are cut: a traceback starts at the first frame of the
user's code (it keeps what that code called, libraries included). A ``SyntaxError`` has no user frame
at all; it shows the file, line and caret. The same cut traceback goes to the console and, through the
exception's ``__traceback__``, to the recorded exception telemetry.
"""

from __future__ import annotations

import os
import traceback
from types import TracebackType

import scorewatch
from scorewatch.errors import ScorewatchError

_OURS = os.path.dirname(os.path.abspath(scorewatch.__file__)) + os.sep
_EXAMPLES = _OURS + "examples" + os.sep  # shipped with scorewatch, but user code
_STDLIB_INTERNALS = (os.sep + os.path.join("concurrent", "futures") + os.sep, os.sep + "asyncio" + os.sep,
                     os.sep + "threading.py", os.sep + "importlib" + os.sep)


def _internal(filename: str) -> bool:
    if filename.startswith("<frozen ") or (filename.startswith(_OURS) and not filename.startswith(_EXAMPLES)):
        return True
    if (os.sep + "inference_schema" + os.sep) in filename:
        return True
    return any(part in filename for part in _STDLIB_INTERNALS)


def user_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` from the first frame that is not scorewatch's, inference-schema's or the stdlib's
    machinery (None when there is no such frame)."""
    while tb is not None and _internal(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def trim(exc: BaseException) -> BaseException:
    """``exc`` with its traceback starting at the user's frames (when it has any); returns ``exc``."""
    tb = user_frames(exc.__traceback__)
    if tb is not None:
        exc.__traceback__ = tb
    return exc


def user_error(exc: BaseException) -> str:
    """The traceback text of ``exc`` as its author needs it (see the module docstring)."""
    if isinstance(exc, ScorewatchError):  # ours, about the script ("defines no run() function")
        return exc.message + "\n"
    if isinstance(exc, SyntaxError):  # file, line, the line and a caret under the error
        return "".join(traceback.format_exception_only(type(exc), exc))
    tb = user_frames(exc.__traceback__)
    if tb is None:
        return "".join(traceback.format_exception_only(type(exc), exc))
    return "".join(traceback.format_exception(type(exc), exc, tb))
