"""The entry script (``score.py``): loading it and calling it the way Azure's inference server does.

Three calling conventions, chosen from how ``run`` is declared:

- ``raw``: ``run(raw_data)`` gets the body as ``str`` (GET: the query parameters as a JSON string).
- ``schema``: any inference-schema decorator; the JSON body's top-level keys are ``run``'s arguments
  (other keys are ignored, as Azure does), each ``@input_schema`` one decoded to its declared type.
  GET query values are parsed as JSON where they are JSON.
- ``rawhttp``: ``run(request)`` gets an :class:`AMLRequest` and may return an :class:`AMLResponse`.

A parameter named ``request_headers`` gets the request headers in all three. Whatever ``run`` returns
(other than a response object) is JSON-encoded. :meth:`EntryScript.invoke` runs in a worker thread: it
decodes the input, calls ``run`` and encodes the output, raising :class:`~scorewatch.errors.BadRequest`
for input the script never saw and :class:`RunFailed` for an exception from the script itself.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import orjson
from inference_schema.schema_util import is_schema_decorated

from scorewatch.errors import BadRequest, ConfigError
from scorewatch.scoring import schema
from scorewatch.scoring.compat.aml_request import RAWHTTP_ATTR, AMLRequest
from scorewatch.scoring.tracebacks import trim

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class RunFailed(Exception):
    """``run()`` raised: ``original`` is the script's exception (its traceback starts at the script's
    frames), ``seconds`` how long ``run()`` ran before it raised."""

    def __init__(self, original: BaseException, seconds: float = 0.0) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original
        self.seconds = seconds


@dataclass
class ScoreInput:
    """What one /score request hands to the script (built in the event loop, used in the thread)."""

    method: str
    body: bytes
    query: list[tuple[str, str]]
    headers: list[tuple[bytes, bytes]]
    scope: dict[str, Any]


@dataclass
class ScoreOutput:
    """The encoded answer of ``run``: the status is 200 unless a response object said otherwise."""

    body: bytes
    status: int = 200
    media_type: str | None = "application/json"
    headers: list[tuple[str, str]] | None = None


class EntryScript:
    """A loaded ``score.py``: ``init()`` and ``run()`` and how ``run`` wants to be called."""

    def __init__(self, path: Path, module: Any) -> None:
        self.path = path
        self.module = module
        self.init_fn = getattr(module, "init", None)
        run = getattr(module, "run", None)
        if not callable(run):
            raise ConfigError(f"{path} defines no run() function")
        self.run = run
        signature = inspect.signature(run)
        params = signature.parameters
        self.wants_headers = "request_headers" in params
        self.accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        self.arg_names = [n for n, p in params.items() if n != "request_headers"
                          and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        self.required = {n for n in self.arg_names if params[n].default is inspect.Parameter.empty}
        self.defaults = {n: params[n].default for n in self.arg_names if n not in self.required}
        self.decorated = schema.decorated_parameters(run)
        if getattr(run, RAWHTTP_ATTR, False):
            self.kind = "rawhttp"
        elif self.decorated or is_schema_decorated(run):
            self.kind = "schema"
        else:
            self.kind = "raw"

    @classmethod
    def load(cls, path: Path) -> EntryScript:
        """Import ``path`` as a module (its folder must already be on ``sys.path``)."""
        name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else "scorewatch_entry"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"{path} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return cls(path, module)

    def init(self) -> None:
        if callable(self.init_fn):
            self.init_fn()

    # --- one request (runs in a worker thread) ------------------------------------------------------

    def invoke(self, request: ScoreInput) -> ScoreOutput:
        if self.kind == "rawhttp":
            args: tuple[Any, ...] = (AMLRequest.from_asgi(request.scope, request.headers, request.body),)
            kwargs: dict[str, Any] = {}
        elif self.kind == "schema":
            args, kwargs = (), self._schema_arguments(request)
        else:
            args, kwargs = (self._raw_argument(request),), {}
        if self.wants_headers:
            kwargs["request_headers"] = {k.decode("latin-1").title(): v.decode("latin-1")
                                         for k, v in request.headers}
        started = perf_counter()
        try:
            result = self.run(*args, **kwargs)
        except Exception as exc:
            raise RunFailed(trim(exc), perf_counter() - started) from exc
        return encode(result)

    def _raw_argument(self, request: ScoreInput) -> str:
        if request.method == "GET":
            return query_text(request.query)
        try:
            return request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"request body is not valid UTF-8 (byte {exc.start})") from None

    def _schema_arguments(self, request: ScoreInput) -> dict[str, Any]:
        if request.method == "GET":
            payload: Any = query_arguments(request.query)
        elif not request.body.strip():
            raise BadRequest("request body is empty; expected a JSON object whose keys are run()'s parameters")
        else:
            try:
                payload = orjson.loads(request.body)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"request body is not valid JSON: {exc}") from None
        expected = ", ".join(self.arg_names)
        if not isinstance(payload, dict):
            raise BadRequest(f"request body must be a JSON object whose keys are run()'s parameters ({expected})")
        kwargs: dict[str, Any] = {}
        for name in self.arg_names:
            parameter = self.decorated.get(name)
            if name not in payload:
                if name in self.required:
                    if parameter is None or not parameter.optional:
                        raise BadRequest(f"missing parameter {name!r}; run() takes: {expected}",
                                         details={"parameter": name})
                    kwargs[name] = None
                elif parameter is not None and not parameter.optional:
                    # inference-schema's wrapper fails on an absent non-optional parameter even when run()
                    # has a default for it, so the default is passed explicitly.
                    kwargs[name] = self.defaults[name]
                continue
            value = payload[name]
            kwargs[name] = schema.decode(parameter, value) if parameter is not None else value
        if self.accepts_kwargs:  # keys that are not parameters are ignored, as Azure does, unless run(**kw)
            kwargs.update({k: v for k, v in payload.items() if k not in kwargs and k not in self.arg_names})
        return kwargs


def query_arguments(query: list[tuple[str, str]]) -> dict[str, Any]:
    """Query parameters as Azure's server reads them: each value parsed as JSON when it is JSON (else
    kept as a string), a repeated name becomes a list. ``?a=1&b=[1,2]&c=x`` → ``{"a": 1, "b": [1, 2], "c": "x"}``."""
    parsed: dict[str, Any] = {}
    repeated: set[str] = set()
    for name, raw in query:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
        if name not in parsed:
            parsed[name] = value
        elif name in repeated:
            parsed[name].append(value)
        else:
            parsed[name] = [parsed[name], value]
            repeated.add(name)
    return parsed


def query_text(query: list[tuple[str, str]]) -> str:
    """What ``run(raw_data)`` gets for a GET: the parsed parameters as Python's ``json.dumps`` writes them
    (``'{"q": 1}'``, default separators, ASCII escapes), byte for byte what Azure's server passes."""
    return json.dumps(query_arguments(query))


def _default(obj: Any) -> Any:
    # orjson knows numpy arrays and scalars; these cover what else models commonly return.
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # pandas DataFrame
        return obj.to_dict(orient="records")
    if hasattr(obj, "tolist"):  # pandas Series, non-contiguous or object numpy arrays
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode(result: Any) -> ScoreOutput:
    """``run``'s return value as a response: response objects as they are, anything else as JSON."""
    if hasattr(result, "get_data") and hasattr(result, "status_code") and hasattr(result, "headers"):
        headers = [(k, v) for k, v in result.headers.items() if k.lower() != "content-length"]
        return ScoreOutput(result.get_data(), result.status_code, None, headers)
    try:
        return ScoreOutput(orjson.dumps(result, default=_default, option=JSON_OPTIONS))
    except TypeError as exc:
        raise RunFailed(TypeError(f"run() returned a value that cannot be encoded as JSON: {exc}")) from exc
