"""The KQL behind every studio page, built from the page's filters.

Each page is a set of named KQL queries (:func:`page_queries`); the studio runs them through the same
compiler and application scoping as the query API (:mod:`scorewatch.studio.runner`), shows their
results, and links each one to the Logs page as it is ("Open in Logs"). Values from the URL (a
service, an operation name, a search text) enter a query only as KQL string literals
(:func:`kql_string`), never as query text.

The time range is not part of the text: like the query API's ``timespan``, the compiler applies it
to every table the query reads, and the Logs page opens with the same range.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from scorewatch.errors import BadRequest
from scorewatch.kql.api import parse_timespan

# The ranges the picker offers (ISO 8601 durations, as the query API's timespan), and their labels.
RANGES = {"PT30M": "30 minutes", "PT1H": "1 hour", "PT6H": "6 hours", "P1D": "24 hours", "P7D": "7 days"}
DEFAULT_RANGE = "P1D"
MAX_TEXT = 1000  # characters of a filter value (a service, a search text)

# Event types of Transaction search: the name Application Insights shows → table.
EVENT_TYPES = {"request": "requests", "dependency": "dependencies", "exception": "exceptions",
               "trace": "traces", "customEvent": "customEvents"}

# Chart grain by the length of the range: about 30 to 170 points.
_GRAINS = ((timedelta(hours=1), "1m", 60), (timedelta(hours=6), "5m", 300), (timedelta(days=1), "15m", 900),
           (timedelta(days=7), "1h", 3600), (timedelta(days=31), "6h", 21600))


def kql_string(value: str) -> str:
    """``value`` as a KQL string literal that holds exactly it."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) < 0xE000:
            out.append("\\u%04x" % (0xFFFD if 0xD800 <= ord(ch) < 0xE000 else ord(ch)))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@dataclass(frozen=True)
class Filters:
    """What every page is filtered by: a time range, and optionally a service and an instance."""

    range: str
    start: datetime
    end: datetime
    service: str = ""
    instance: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)  # the page's own parameters (an operation...)

    @classmethod
    def parse(cls, params: Mapping[str, str], now: datetime, *, extra: tuple[str, ...] = ()) -> Filters:
        """From a request's query parameters: ``range`` (a duration such as ``PT1H`` or ``start/end``;
        ``custom`` takes ``start`` and ``end``), ``service``, ``instance``, and the page's ``extra``."""
        text = params.get("range") or DEFAULT_RANGE
        if text == "custom":
            start, end = params.get("start", ""), params.get("end", "")
            if not start or not end:
                raise BadRequest("a custom range needs a start and an end")
            text = f"{start}/{end}"
        span = parse_timespan(text, now)
        assert span is not None
        values = {name: _text(params.get(name, ""), name) for name in ("service", "instance", *extra)}
        return cls(text, span[0], span[1], values.pop("service"), values.pop("instance"), values)

    @property
    def span(self) -> tuple[datetime, datetime]:
        return self.start, self.end

    @property
    def grain(self) -> str:
        """The bin of the charts' time axis, as a KQL timespan."""
        return self._grain()[0]

    @property
    def grain_s(self) -> int:
        return self._grain()[1]

    def _grain(self) -> tuple[str, int]:
        length = self.end - self.start
        for limit, grain, seconds in _GRAINS:
            if length <= limit:
                return grain, seconds
        return "1d", 86400

    def where(self) -> str:
        """The service and instance filter as KQL pipes (empty when there is none)."""
        parts = []
        if self.service:
            parts.append(f"cloud_RoleName == {kql_string(self.service)}")
        if self.instance:
            parts.append(f"cloud_RoleInstance == {kql_string(self.instance)}")
        return f" | where {' and '.join(parts)}" if parts else ""

    def get(self, name: str) -> str:
        return self.extra.get(name, "")

    def params(self, **changes: str | None) -> dict[str, str]:
        """The query parameters that give these filters (with ``changes``; None drops one)."""
        values: dict[str, str] = {"range": self.range, "service": self.service, "instance": self.instance,
                                  **self.extra}
        for name, value in changes.items():
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
        return {k: v for k, v in values.items() if v}

    def public(self) -> dict[str, Any]:
        return {"range": self.range, "start": iso(self.start), "end": iso(self.end), "grain": self.grain,
                "service": self.service, "instance": self.instance, **self.extra}


def _text(value: str, name: str) -> str:
    if len(value) > MAX_TEXT:
        raise BadRequest(f"'{name}' is longer than {MAX_TEXT} characters")
    return value


def iso(value: datetime, timespec: str = "seconds") -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


# ------------------------------------------------------------------ the pages
def overview(f: Filters) -> dict[str, str]:
    w, g = f.where(), f.grain
    failed = "failed = sumif(itemCount, success == false)"
    return {
        "requests_total": f"requests{w} | summarize requests = sum(itemCount), {failed}, "
                          "avg_duration = avg(duration), percentiles(duration, 50, 95, 99)",
        "requests_timeline": f"requests{w} | summarize requests = sum(itemCount), {failed}, "
                             f"avg_duration = avg(duration) by bin(timestamp, {g}) | order by timestamp asc",
        "dependencies_total": f"dependencies{w} | summarize calls = sum(itemCount), {failed}, "
                              "avg_duration = avg(duration)",
        "dependencies_timeline": f"dependencies{w} | summarize calls = sum(itemCount), {failed}, "
                                 f"avg_duration = avg(duration) by bin(timestamp, {g}) | order by timestamp asc",
        "exceptions_total": f"exceptions{w} | summarize exceptions = sum(itemCount)",
        "exceptions_timeline": f"exceptions{w} | summarize exceptions = sum(itemCount) by bin(timestamp, {g}) "
                               "| order by timestamp asc",
    }


_REQUEST_SAMPLE = ("project timestamp, name, duration, resultCode, success, operation_Id, cloud_RoleName, "
                   "cloud_RoleInstance")


def performance(f: Filters) -> dict[str, str]:
    w = f.where()
    chosen = f"{w} | where name == {kql_string(f.get('operation'))}" if f.get("operation") else w
    return {
        "operations": f"requests{w} | summarize count_ = sum(itemCount), avg_duration = avg(duration), "
                      "percentiles(duration, 50, 95, 99) by name | order by count_ desc | take 200",
        # Log-scaled buckets (ten per power of ten), as latency spreads over orders of magnitude; a
        # bucket's lower bound in ms is computed on the few result rows, not on every request.
        "distribution": f"requests{chosen} | summarize count_ = sum(itemCount) by bucket = bin(log10(duration), 0.1) "
                        "| order by bucket asc "
                        "| project duration_ms = iff(isnull(bucket), 0.0, round(pow(10, bucket), 3)), count_",
        "samples": f"requests{chosen} | top 20 by duration desc | {_REQUEST_SAMPLE}",
    }


def failures(f: Filters) -> dict[str, str]:
    w = f.where()
    operation, code = f.get("operation"), f.get("code")
    exception, dependency = f.get("exception"), f.get("dependency")
    if exception:
        samples = (f"exceptions{w} | where type == {kql_string(exception)} | top 20 by timestamp desc "
                   "| project timestamp, type, outerMessage, operation_Name, operation_Id, cloud_RoleName, "
                   "cloud_RoleInstance")
    elif dependency:
        samples = (f"dependencies{w} | where success == false and target == {kql_string(dependency)} "
                   "| top 20 by timestamp desc | project timestamp, type, target, name, resultCode, duration, "
                   "operation_Id, cloud_RoleName")
    else:
        chosen = "".join(f" and {column} == {kql_string(value)}"
                         for column, value in (("name", operation), ("resultCode", code)) if value)
        samples = (f"requests{w} | where success == false{chosen} | top 20 by timestamp desc | {_REQUEST_SAMPLE}")
    return {
        "timeline": f"requests{w} | summarize failed = sumif(itemCount, success == false) "
                    f"by bin(timestamp, {f.grain}) | order by timestamp asc",
        "operations": f"requests{w} | summarize failed = sumif(itemCount, success == false), total = sum(itemCount) "
                      "by name | where failed > 0 | order by failed desc | take 100",
        "response_codes": f"requests{w} | where success == false | summarize count_ = sum(itemCount) by resultCode "
                          "| top 10 by count_",
        "exception_types": f"exceptions{w} | summarize count_ = sum(itemCount) by type | top 10 by count_",
        "dependencies": f"dependencies{w} | where success == false | summarize count_ = sum(itemCount) "
                        "by target | top 10 by count_",
        "samples": samples,
    }


# What each event type shows in the results list, and where its text search looks.
_SEARCH = {
    "requests": ("name", "resultCode", ("name", "url", "resultCode")),
    "dependencies": ("name", "strcat(type, ' ', target, ' ', resultCode)", ("name", "target", "data", "type")),
    "exceptions": ("type", "outerMessage", ("type", "outerMessage", "innermostMessage")),
    "traces": ("message", "strcat('severity ', severityLevel)", ("message",)),
    "customEvents": ("name", "''", ("name",)),
}
# A printed line is a trace whose message names the stream; its text is customDimensions.Contents.
PRINTED = ("STDOUT", "STDERR")
_PRINTED = ", ".join(kql_string(s) for s in PRINTED)


def search(f: Filters, types: list[str]) -> dict[str, str]:
    """Transaction search over the chosen event types (all when none), with ``q`` as text (in the
    main text columns, the operation id and ``customDimensions``): ``results``, the latest
    :data:`SEARCH_ROWS` items, and ``timeline``, their count over time (see :func:`search_windows`)."""
    tables = [EVENT_TYPES[t] for t in types if t in EVENT_TYPES] or list(EVENT_TYPES.values())
    text = f.get("q")
    found = {}
    for table in tables:
        searched = _SEARCH[table][2]
        where = f.where()
        if text:
            # Cheapest first: the id's equality, the short columns, then the JSON of customDimensions,
            # searched as its stored text (a whole dynamic column's `contains` reads it as is, where
            # `tostring()` would write every row's JSON out again).
            where += " | where " + " or ".join(
                [f"operation_Id == {kql_string(text)}"]
                + [text_contains(column, text) for column in (*searched, "customDimensions")])
        found[table] = f"{table}{where}"

    def shown(table: str) -> str:
        summary, detail, _ = _SEARCH[table]
        return (f"project timestamp, itemType, summary = tostring({summary}), detail = tostring({detail}), "
                "operation_Id, cloud_RoleName, customDimensions")

    counts = ", ".join(f"({kql} | summarize count_ = sum(itemCount) by bin(timestamp, {f.grain}), itemType)"
                       for kql in found.values())
    # The latest 100 of each table, then the latest 100 of those: the same rows as the latest 100 of
    # all, without sorting every row; the printed text is read from the rows shown only.
    latest = ", ".join(f"({kql} | top {SEARCH_ROWS} by timestamp desc | {shown(table)})"
                       for table, kql in found.items())
    return {
        "results": f"union {latest} | top {SEARCH_ROWS} by timestamp desc "
                   f"| extend summary = iff(summary in ({_PRINTED}), tostring(customDimensions.Contents), summary) "
                   "| project-away customDimensions",
        "timeline": f"union {counts} | order by timestamp asc",
    }


def text_contains(column: str, text: str) -> str:
    """KQL for ``column contains text`` (ignoring case), led by a case-sensitive ``contains_cs`` of
    the longest run of at least :data:`_CASELESS_RUN` characters of ``text`` that have no case (ASCII
    digits, punctuation, spaces: no character becomes one of them in lower or upper case), when
    there is one: every match holds that run exactly as written, and a case-sensitive search is
    several times cheaper than a case-ignoring one, so it rejects most rows first. The answer is
    the same as without it."""
    test = f"{column} contains {kql_string(text)}"
    run = max(_CASELESS.findall(text), key=len, default="")
    if len(run) < _CASELESS_RUN:
        return test
    return f"({column} contains_cs {kql_string(run)} and {test})"


_CASELESS = re.compile(r"[\x20-\x40\x5b-\x60\x7b-\x7e]+")  # ASCII printable, less the letters
_CASELESS_RUN = 3
SEARCH_ROWS = 100  # the results Transaction search lists
SEARCH_WINDOW = timedelta(hours=1)  # the first window its results are looked for in
SEARCH_GROWTH = 4  # how much longer each next window is
SEARCH_BUDGET_S = 0.8  # the time its results may take, unless asked for the whole range


def search_windows(f: Filters, until: datetime | None = None, align_s: int = 0,
                   first: timedelta = SEARCH_WINDOW) -> list[tuple[datetime, datetime]]:
    """The time windows Transaction search reads, newest first, from ``until`` (the range's end by
    default) back to the range's start: the last ``first``, then windows
    :data:`SEARCH_GROWTH` times longer each. They cover it once, without overlap: a window's end is
    one microsecond (the store's resolution) before the start of the newer one, as a span includes
    both its ends. With ``align_s``, windows start on multiples of it (the chart's bin), so no bin
    is counted in two windows.

    The results stop at the first window by which they have :data:`SEARCH_ROWS`, which are then
    the latest of the whole range: a term found often is answered from the last hour alone."""
    top = until or f.end
    windows: list[tuple[datetime, datetime]] = []
    length = first
    while True:
        start = max(_floor(top - length, align_s), f.start)
        if not windows or start < windows[-1][0]:
            windows.append((start, windows[-1][0] - TICK if windows else top))
        if start <= f.start:
            return windows
        length *= SEARCH_GROWTH


TICK = timedelta(microseconds=1)  # the store's resolution


def _floor(at: datetime, step_s: int) -> datetime:
    if not step_s:
        return at
    return datetime.fromtimestamp(at.timestamp() // step_s * step_s, UTC)


def transaction(operation_id: str) -> dict[str, str]:
    """Everything recorded under one operation id, in time order."""
    op = kql_string(operation_id)
    return {
        "spans": f"union (requests | where operation_Id == {op}), (dependencies | where operation_Id == {op}) "
                 "| project timestamp, itemType, id, operation_ParentId, name, target, type, duration, success, "
                 "resultCode, cloud_RoleName | order by timestamp asc | take 500",
        "items": f"union requests, dependencies, exceptions, traces, customEvents | where operation_Id == {op} "
                 "| order by timestamp asc | take 1000",
    }


MODEL_DATA_MESSAGE = "model_data_collection"


def model_data(f: Filters) -> dict[str, str]:
    """Captured inputs and outputs; ``failed`` keeps those of the latest 1000 failed requests (found
    from the requests, whose ids then pick their rows: scanning every row's customDimensions for its
    status costs seconds over millions of rows), ``q`` searches them."""
    rows = f"traces{f.where()} | where message == {kql_string(MODEL_DATA_MESSAGE)}"
    if f.get("q"):
        rows += f" | where {text_contains('customDimensions', f.get('q'))}"
    count = f"{rows} | summarize rows = sum(itemCount)"
    if f.get("failed"):
        failed = f"requests{f.where()} | where success == false"
        rows = f"{failed} | top 1000 by timestamp desc | project operation_Id | join kind=inner ({rows}) on operation_Id"
        count = f"{failed} | summarize failed_requests = sum(itemCount)"
    return {
        "count": count,
        "rows": f"{rows} | top 100 by timestamp desc | project timestamp, operation_Id, "
                "input = customDimensions.Input, prediction = customDimensions.Prediction, "
                "status = tostring(customDimensions['Status Code']), "
                "request_id = tostring(customDimensions['Request Id']), cloud_RoleName, cloud_RoleInstance",
    }


def filter_choices() -> dict[str, str]:
    """The services and instances the filter lists offer."""
    return {"services": "requests | summarize requests = sum(itemCount) by cloud_RoleName, cloud_RoleInstance "
                        "| order by cloud_RoleName asc, cloud_RoleInstance asc | take 500"}


DEFAULT_LOGS_QUERY = "requests\n| summarize count() by bin(timestamp, 1h), resultCode\n| render timechart"
