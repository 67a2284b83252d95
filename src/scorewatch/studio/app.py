"""The studio's pages and their JSON twins, served by the hub under ``/studio``.

URLs name the application by its name (``/studio/default/performance``), or ``_all`` for every
application the session opens. Each page is one handler that builds its KQL from the URL's filters
(:mod:`scorewatch.studio.queries`), runs it scoped to the applications the viewer may open
(:mod:`scorewatch.studio.runner`), and answers either the data (``.json``, the page's twin, as
Datasette does) or the page rendered from it (HTML; only the body when the studio's own script asks
for a partial update). See docs/studio.md.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import orjson
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from scorewatch.apps import Registry
from scorewatch.deploy.records import Deployment
from scorewatch.errors import BadRequest, Forbidden, MethodNotAllowed, NotFound, TooManyRequests, Unauthorized
from scorewatch.http import as_error, error_response
from scorewatch.kql.cli import csv_cell
from scorewatch.settings import Settings
from scorewatch.store.base import Store
from scorewatch.studio import queries
from scorewatch.studio.auth import (
    CSRF_HEADER,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Session,
    Sessions,
    apps_for_key,
    check_csrf,
    consume_login_token,
    is_loopback,
    set_session_cookie,
)
from scorewatch.studio.live import LiveHub, Tappable
from scorewatch.studio.processes import ServiceProcess, service_processes
from scorewatch.studio.runner import Result, Runner, records
from scorewatch.studio.services import SWITCHES, Deployments, deployments_of
from scorewatch.studio.transaction import blob_digests, timeline
from scorewatch.studio.web import STATIC, SecurityHeaders, environment, json_bytes, read_form
from scorewatch.telemetry.blobs import BlobStore
from scorewatch.workspace import Workspace

ALL = "_all"  # the URL segment for every application the session opens (no application's name)
LOGS_ROWS = 10_000  # rows the Logs page fetches to page through (downloads: query_max_rows)
MAX_QUERY = 64 * 1024
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
BODY_START, BODY_END = "<!--body-->", "<!--/body-->"  # around the body in base.html

NAV = (("overview", "Overview"), ("performance", "Performance"), ("failures", "Failures"),
       ("search", "Transaction search"), ("logs", "Logs"), ("modeldata", "Model data"),
       ("live", "Live metrics"), ("services", "Services"))

# Pages that are a set of queries over the filters: name → (queries, the page's own parameters).
QUERY_PAGES: dict[str, tuple[Callable[[queries.Filters], dict[str, str]], tuple[str, ...]]] = {
    "overview": (queries.overview, ()),
    "performance": (queries.performance, ("operation",)),
    "failures": (queries.failures, ("operation", "code", "exception", "dependency")),
    "modeldata": (queries.model_data, ("q", "failed")),
}
SEARCH_PARAMS = ("types", "q", "full")  # Transaction search's own parameters


class Host(Protocol):
    """What the studio needs of the hub (``scorewatch.ingest.hub.Hub`` is one)."""

    @property
    def workspace(self) -> Workspace: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> Store: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def ingestor(self) -> Tappable: ...


class LoginRequired(Exception):
    pass


@dataclass
class Viewer:
    """Who is asking: their session (None when an ``x-api-key`` header says who) and the ids of the
    applications they may open."""

    session: Session | None
    app_ids: list[str]


@dataclass
class Scope:
    """The applications one URL shows: ``segment`` is the URL's name for them."""

    segment: str
    app_ids: list[str]
    label: str


Handler = Callable[[Request], Awaitable[Response]]


class Studio:
    def __init__(self, host: Host, *, clock: Callable[[], datetime] | None = None) -> None:
        settings = host.settings
        self.host = host
        self.registry = host.registry
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sessions = Sessions()
        self.runner = Runner(host.store, timeout_s=settings.query_timeout_s, max_rows=settings.query_max_rows,
                             concurrency=settings.query_concurrency)
        self.live = LiveHub(host.workspace, host.ingestor, processes=self._processes)
        self.blobs = BlobStore(host.workspace.blobs_dir)
        self.env = environment()

    def routes(self) -> list[BaseRoute]:
        h = self._handled
        return [Mount("/studio", middleware=[Middleware(SecurityHeaders)], routes=[
            Route("/", h(self.home)),
            Route("/login", h(self.login), methods=["GET", "POST"]),
            Route("/logout", h(self.logout), methods=["POST"]),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
            Route("/{app}/transaction/{operation_id}/blob/{digest}", h(self.blob)),
            Route("/{app}/transaction/{operation_id}", h(self.transaction)),
            Route("/{app}/live/stream", h(self.live_stream)),
            Route("/{app}/search/timeline.json", h(self.search_timeline)),
            Route("/{app}/services/{name}/{action}", h(self.service_action), methods=["GET", "POST"]),
            Route("/{app}/{page}", h(self.page), methods=["GET", "POST"]),
            Route("/{app}", h(self.app_home)),
        ])]

    # ------------------------------------------------------------------ who is asking
    def viewer(self, request: Request) -> Viewer:
        api_key = request.headers.get("x-api-key")
        if api_key is not None:  # scripts reading the JSON twins, as they read the query API
            opened = apps_for_key(self.registry, api_key)
            if not opened:
                raise Forbidden("the API key is not valid for any application")
            return Viewer(None, opened)
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None and self.settings.studio_local_no_login and is_loopback(request):
            session = self.sessions.create(None, "local")
            request.state.new_session = session
        if session is None:
            raise LoginRequired()
        return Viewer(session, session.app_ids(self.registry))

    def scope(self, viewer: Viewer, segment: str) -> Scope:
        if segment == ALL:
            return Scope(ALL, viewer.app_ids, "All applications")
        app = next((a for a in self.registry.list() if a.name == segment), None)
        if app is None or app.app_id not in viewer.app_ids:  # the same answer either way: no probing
            raise Forbidden(f"this login does not open an application named {segment!r}")
        return Scope(app.name, [app.app_id], app.name)

    def choices(self, viewer: Viewer) -> list[tuple[str, str]]:
        """The applications the viewer may pick: (URL segment, label)."""
        apps = [(a.name, a.name) for a in self.registry.list() if a.app_id in viewer.app_ids]
        return ([(ALL, "All applications")] if len(apps) > 1 else []) + apps

    def _handled(self, handler: Handler) -> Handler:
        """``handler`` with the studio's answers to a missing login and to errors."""
        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                if _wants_data(request):
                    response = error_response(Unauthorized("log in to the studio, or send an x-api-key header"))
                else:
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    response = RedirectResponse(f"/studio/login?{urlencode({'next': target})}", 303)
            except Exception as exc:
                error = as_error(exc)
                response = error_response(error) if _wants_data(request) else \
                    self.render(request, "error.html", {"error": error}, status=error.status)
            session = getattr(request.state, "new_session", None)
            if session is not None:
                set_session_cookie(response, request, session)
            return response
        return handle

    # ------------------------------------------------------------------ login
    async def home(self, request: Request) -> Response:
        viewer = self.viewer(request)
        choices = self.choices(viewer)
        segment = choices[0][0] if choices else ALL
        return RedirectResponse(f"/studio/{segment}/overview", 303)

    async def app_home(self, request: Request) -> Response:
        return RedirectResponse(f"/studio/{quote(request.path_params['app'])}/overview", 303)

    async def login(self, request: Request) -> Response:
        target = _safe_next(request.query_params.get("next", ""))
        if request.method == "POST":
            form = await read_form(request)
            check_csrf(request, request.cookies.get(LOGIN_CSRF_COOKIE, ""), form.get("csrf"))
            target = _safe_next(form.get("next", ""))
            key = form.get("api_key", "").strip()
            deployments = deployments_of(self.host)
            if key and deployments is not None and deployments.admits(key):  # the workspace's admin key
                return self._logged_in(request, self.sessions.create(None, "admin"), target)
            opened = apps_for_key(self.registry, key)
            if not opened:
                return self._login_page(request, target, "That API key opens no application of this hub.", 403)
            return self._logged_in(request, self.sessions.create(opened, "key"), target)
        token = request.query_params.get("token")
        if token is not None:
            if consume_login_token(self.host.workspace, token):
                return self._logged_in(request, self.sessions.create(None, "token"), target)
            return self._login_page(request, target, "This login link was used already or has run out. "
                                    "Get a new one with `scorewatch studio`, or log in with an API key.", 403)
        return self._login_page(request, target)

    def _login_page(self, request: Request, target: str, message: str = "", status: int = 200) -> Response:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or _new_token()
        response = self.render(request, "login.html", {"login_csrf": token, "next": target, "message": message},
                               status=status)
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/studio/login",
                            secure=request.url.scheme == "https")
        return response

    def _logged_in(self, request: Request, session: Session, target: str) -> Response:
        self.sessions.end(request.cookies.get(SESSION_COOKIE))  # a login always makes a new session
        response = RedirectResponse(target or "/studio/", 303)
        set_session_cookie(response, request, session)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/studio/login")
        return response

    async def logout(self, request: Request) -> Response:
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            form = await read_form(request)
            check_csrf(request, session.csrf, form.get("csrf") or request.headers.get(CSRF_HEADER))
            self.sessions.end(session.id)
        response = RedirectResponse("/studio/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/studio")
        return response

    # ------------------------------------------------------------------ pages
    async def page(self, request: Request) -> Response:
        name, fmt = _split_format(request.path_params["page"])
        viewer = self.viewer(request)
        scope = self.scope(viewer, request.path_params["app"])
        if request.method == "POST" and not (name == "logs" and fmt == "json"):
            raise MethodNotAllowed("only the Logs page's data (logs.json) takes a POST")
        now = self.clock()
        if name in QUERY_PAGES:
            build, extra = QUERY_PAGES[name]
            filters = queries.Filters.parse(_params(request), now, extra=extra)
            started = time.perf_counter()
            results = await self.runner.run_all(scope.app_ids, build(filters), filters.span, now)
            data = self._data(name, scope, filters, results, started)
        elif name == "search":
            filters = queries.Filters.parse(_params(request), now, extra=SEARCH_PARAMS)
            data = await self._search(scope, filters, now)
        elif name == "logs":
            return await self._logs(request, viewer, scope, fmt, now)
        elif name == "live" and fmt in ("html", "json"):
            filters = queries.Filters.parse(_params(request), now)
            processes = await asyncio.to_thread(self.live.processes, frozenset(scope.app_ids), filters.service)
            data = {"page": "live", "app": scope.segment, "filters": filters.public(),
                    "processes": processes, "viewers": len(self.live.viewers)}
        elif name == "services" and fmt in ("html", "json"):
            filters = queries.Filters.parse(_params(request), now)
            data = await self._services(viewer, scope, filters)
        elif name == "filters" and fmt == "json":  # what the service and instance filters offer
            filters = queries.Filters.parse(_params(request), now)
            started = time.perf_counter()
            results = await self.runner.run_all(scope.app_ids, queries.filter_choices(), filters.span, now)
            data = self._data(name, scope, filters, results, started)
            data["services"] = records(results["services"])
            return _json(data)
        else:
            raise NotFound(f"no studio page {request.path_params['page']!r}")
        if fmt == "json":
            return _json(data)
        if fmt != "html":
            raise NotFound(f"no studio page {request.path_params['page']!r}")
        return self.render(request, f"{name}.html", {"data": data, "scope": scope, "filters": filters,
                                                     "viewer": viewer})

    def _data(self, name: str, scope: Scope, filters: queries.Filters, results: dict[str, Result],
              started: float) -> dict[str, Any]:
        return {"page": name, "app": scope.segment, "filters": filters.public(), "queries": results,
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 1)}

    async def _search(self, scope: Scope, filters: queries.Filters, now: datetime) -> dict[str, Any]:
        """Transaction search's data: its latest results, looked for window by window from the end of
        the range back (:func:`queries.search_windows`) until enough are found, so a term found often
        does not read the whole range; within :data:`queries.SEARCH_BUDGET_S` unless ``full`` asks
        for the whole range (``complete`` is false when it stopped short, ``searched_from`` says how
        far back it looked). The count of matches over time reads every row of the range whatever
        the term, so the page does not wait for it: it is ``deferred``, fetched on its own from
        ``search/timeline.json``."""
        started = time.perf_counter()
        kql = _search_queries(filters)
        read, complete = await self._windows(
            scope, kql["results"], queries.search_windows(filters), now,
            budget=None if filters.get("full") else queries.SEARCH_BUDGET_S,
            enough=lambda found: sum(len(r.get("rows", [])) for _, r in found) >= queries.SEARCH_ROWS)
        results = _joined(kql["results"], read, complete)
        if "rows" in results:
            results["rows"] = results["rows"][:queries.SEARCH_ROWS]
        data = self._data("search", scope, filters, {"results": results}, started)
        href = f"/studio/{quote(scope.segment)}/search/timeline.json?{_fixed(filters, full=None)}"
        data["deferred"] = {"timeline": {"kql": kql["timeline"], "href": href}}
        return data

    async def search_timeline(self, request: Request) -> Response:
        """``/studio/{app}/search/timeline.json``: Transaction search's count of matches over time, in
        the shape of a page's twin (``queries.timeline``). It counts newest first, window by window
        (on the chart's bins), for :data:`queries.SEARCH_BUDGET_S`: when the range is not done by
        then, ``next`` is the URL of the rest (``until=`` the instant before ``searched_from``, and
        ``step=`` the seconds of range that the pace so far counts in that time), which the page
        fetches in turn, drawing each part as it comes."""
        scope = self.scope(self.viewer(request), request.path_params["app"])
        now = self.clock()
        params = _params(request)
        filters = queries.Filters.parse(params, now, extra=SEARCH_PARAMS)
        until = _instant(params["until"], "until") if params.get("until") else None
        if until is not None and not filters.start <= until <= filters.end:
            raise BadRequest("'until' must be within the range")
        step = params.get("step", "")
        if step and not (step.isdigit() and int(step) > 0):
            raise BadRequest("'step' must be a whole number of seconds, at least 1")
        started = time.perf_counter()
        kql = _search_queries(filters)["timeline"]
        windows = queries.search_windows(filters, until, filters.grain_s,
                                         timedelta(seconds=int(step)) if step else queries.SEARCH_WINDOW)
        read, complete = await self._windows(scope, kql, windows, now, budget=queries.SEARCH_BUDGET_S,
                                             enough=lambda found: False)
        data = self._data("search", scope, filters, {"timeline": _joined(kql, read, complete)}, started)
        data["part"] = "timeline"
        if not complete and "error" not in read[-1][1]:
            rest, counted = read[-1][0][0] - queries.TICK, _seconds((read[-1][0][0], read[0][0][1]))
            pace = max(time.perf_counter() - started, 1e-3) / counted
            data["next"] = f"{request.url.path}?" + _fixed(
                filters, full=None, until=queries.iso(rest, "microseconds"),
                step=str(max(filters.grain_s, int(queries.SEARCH_BUDGET_S / pace))))
        return _json(data)

    async def _windows(self, scope: Scope, kql: str, windows: list[tuple[datetime, datetime]], now: datetime, *,
                       budget: float | None, enough: Callable[[list[tuple[tuple[datetime, datetime], Result]]], bool],
                       ) -> tuple[list[tuple[tuple[datetime, datetime], Result]], bool]:
        """``kql`` run over each of ``windows`` in turn (newest first), until ``enough`` of it is
        read, an error, or the ``budget`` (seconds): a window the pace so far says would not end in
        time is not started (the first always is). The pace is the last window's: the longest, so
        the least swayed by what every query costs however short. The windows read with their
        results, and whether that is all it takes (enough, or every window read)."""
        started = time.perf_counter()
        read: list[tuple[tuple[datetime, datetime], Result]] = []
        pace = 0.0  # seconds per second of range, in the last window
        for window in windows:
            if read and budget is not None and \
                    time.perf_counter() - started + pace * _seconds(window) > budget:  # would it end in time?
                return read, False
            began = time.perf_counter()
            read.append((window, await self.runner.run(scope.app_ids, kql, window, now)))
            pace = (time.perf_counter() - began) / max(_seconds(window), 1e-6)
            if "error" in read[-1][1]:
                return read, False
            if enough(read):
                return read, True
        return read, True

    async def transaction(self, request: Request) -> Response:
        operation_id, fmt = _split_format(request.path_params["operation_id"])
        viewer = self.viewer(request)
        scope = self.scope(viewer, request.path_params["app"])
        if not operation_id or len(operation_id) > 200:
            raise BadRequest("an operation id is 1 to 200 characters")
        now = self.clock()
        params = _params(request)
        filters = queries.Filters.parse(params, now)
        span = filters.span if params.get("range") else None  # a link from anywhere: the whole retention
        started = time.perf_counter()
        results = await self.runner.run_all(scope.app_ids, queries.transaction(operation_id), span, now)
        data = self._data("transaction", scope, filters, results, started)
        data["operation_Id"] = operation_id
        data["timeline"] = timeline(records(results["spans"]))
        data["blobs"] = sorted(blob_digests(records(results["items"])))
        if fmt == "json":
            return _json(data)
        return self.render(request, "transaction.html", {"data": data, "scope": scope, "filters": filters,
                                                         "viewer": viewer, "operation_id": operation_id})

    async def blob(self, request: Request) -> Response:
        """A payload captured as a blob, if a row of this operation in these applications names it."""
        viewer = self.viewer(request)
        scope = self.scope(viewer, request.path_params["app"])
        digest, operation_id = request.path_params["digest"], request.path_params["operation_id"]
        if not _DIGEST.match(digest):
            raise NotFound("no such payload")
        result = await self.runner.run(scope.app_ids, queries.transaction(operation_id)["items"], None, self.clock())
        if digest not in blob_digests(records(result)) or not self.blobs.path_for(digest).is_file():
            raise NotFound("no such payload in this operation")
        return FileResponse(self.blobs.path_for(digest), media_type="application/octet-stream",
                            filename=f"{digest[:16]}.bin")

    async def _logs(self, request: Request, viewer: Viewer, scope: Scope, fmt: str, now: datetime) -> Response:
        params = _params(request)
        if request.method == "POST":
            if viewer.session is not None:  # a browser: the session's token must come with it
                check_csrf(request, viewer.session.csrf, request.headers.get(CSRF_HEADER))
            params.update(await _json_body(request))
        filters = queries.Filters.parse(params, now)
        text = params.get("query", "")
        if len(text) > MAX_QUERY:
            raise BadRequest(f"the query is longer than {MAX_QUERY} characters")
        if fmt == "html":
            data = {"page": "logs", "app": scope.segment, "filters": filters.public(),
                    "query": text or queries.DEFAULT_LOGS_QUERY, "run": bool(text)}
            return self.render(request, "logs.html", {"data": data, "scope": scope, "filters": filters,
                                                      "viewer": viewer})
        if not text.strip():
            raise BadRequest("the 'query' parameter is required")
        limit = _limit(params.get("limit"), self.settings.query_max_rows, LOGS_ROWS if fmt == "json" else None)
        started = time.perf_counter()
        result = await self.runner.run(scope.app_ids, text, filters.span, now, max_rows=limit)
        if fmt == "csv":
            if "error" in result:
                return _json({"error": result["error"]}, status=400)
            return Response(_csv(result), media_type="text/csv; charset=utf-8",
                            headers={"content-disposition": 'attachment; filename="query.csv"'})
        if fmt != "json":
            raise NotFound(f"no studio page {request.path_params['page']!r}")
        data = self._data("logs", scope, filters, {"result": result}, started)
        data["query"] = text
        headers = {"content-disposition": 'attachment; filename="query.json"'} if params.get("download") else {}
        return _json(data, headers=headers)  # a KQL error is the result's, as on every page's twin

    async def live_stream(self, request: Request) -> Response:
        viewer = self.viewer(request)
        scope = self.scope(viewer, request.path_params["app"])
        if len(self.live.viewers) >= self.live.max_viewers:
            raise TooManyRequests(f"{len(self.live.viewers)} live metrics pages are open; close one and retry")
        params = _params(request)
        return self.live.stream(frozenset(scope.app_ids), params.get("service", ""), params.get("instance", ""))

    # ------------------------------------------------------------------ services
    async def _services(self, viewer: Viewer, scope: Scope, filters: queries.Filters,
                        revealed: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
        """The Services page's data: the deployments reporting to the scope's applications."""
        source = deployments_of(self.host)
        started = time.perf_counter()
        services = [] if source is None else await asyncio.to_thread(
            source.services, scope.app_ids, name=filters.service, revealed=revealed)
        return {"page": "services", "app": scope.segment, "filters": filters.public(),
                "deployments": source is not None, "administers": _administers(viewer),
                "services": [s.public() for s in services],
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 1)}

    async def service_action(self, request: Request) -> Response:
        """``POST /studio/{app}/services/{name}/{action}``: the Services page's buttons. ``action`` is
        ``app-insights`` or ``model-data`` (``value=on|off``), ``keys`` (show them), ``regen-key``
        (``key=Primary|Secondary``) or ``restart``; ``.json`` answers the service (or the keys) as data,
        else the page (showing the keys) or a redirect back to it."""
        action, fmt = _split_format(request.path_params["action"])
        viewer = self.viewer(request)
        scope = self.scope(viewer, request.path_params["app"])
        if request.method != "POST":
            raise MethodNotAllowed("the Services page's actions are POSTs (with the session's CSRF token)")
        if viewer.session is None:
            raise Forbidden("the studio's actions need a browser session; scripts use the control API "
                            "(/v1/services, with the admin key)")
        form = await (_json_body(request) if "json" in request.headers.get("content-type", "")
                      else read_form(request))
        check_csrf(request, viewer.session.csrf, form.get("csrf") or request.headers.get(CSRF_HEADER))
        if not viewer.session.administers:
            raise Forbidden("acting on a service needs a login with the workspace's admin key or a one-time link "
                            "from `scorewatch studio`; this login opens its applications' data only")
        source = deployments_of(self.host)
        if source is None:
            raise NotFound("this hub runs no deployments")
        name = request.path_params["name"]
        deployment = await asyncio.to_thread(source.get, name, scope.app_ids)
        filters = queries.Filters.parse({}, self.clock())
        if action == "keys":
            keys = await asyncio.to_thread(source.keys, deployment)
            if fmt == "json":
                return _json({"primaryKey": keys[0], "secondaryKey": keys[1]})
            data = await self._services(viewer, scope, filters, revealed={deployment.name: keys})
            return self.render(request, "services.html", {"data": data, "scope": scope, "filters": filters,
                                                          "viewer": viewer})
        await asyncio.to_thread(self._act, source, deployment, action, form)
        if fmt == "json":
            [view] = await asyncio.to_thread(source.services, scope.app_ids, name=deployment.name, tail=0)
            return _json(view.public())
        return RedirectResponse(f"/studio/{quote(scope.segment)}/services#service-{deployment.name}", 303)

    @staticmethod
    def _act(source: Deployments, deployment: Deployment, action: str, form: dict[str, str]) -> None:
        if action in SWITCHES:
            value = form.get("value", "")
            if value not in ("on", "off"):
                raise BadRequest(f"'value' must be on or off, not {value!r}", details={"field": "value"})
            source.switch(deployment, action, value == "on")
        elif action == "regen-key":
            source.regen_key(deployment, form.get("key", ""))
        elif action == "restart":
            source.restart(deployment)
        else:
            raise NotFound(f"no service action {action!r}: app-insights, model-data, keys, regen-key, restart")

    def _processes(self) -> list[ServiceProcess]:
        source = deployments_of(self.host)
        return source.processes() if source is not None else service_processes(self.host.workspace)

    # ------------------------------------------------------------------ rendering
    def render(self, request: Request, template: str, context: dict[str, Any], *, status: int = 200) -> Response:
        viewer: Viewer | None = context.get("viewer")
        scope: Scope | None = context.get("scope")
        filters: queries.Filters | None = context.get("filters")
        segment = scope.segment if scope else ""
        base = f"/studio/{quote(segment)}" if segment else "/studio"

        def link(page: str, **changes: str | None) -> str:
            params = filters.params(**changes) if filters else {}
            return f"{base}/{page}" + (f"?{urlencode(params)}" if params else "")

        def logs_link(kql: str) -> str:
            return f"{base}/logs?" + urlencode({"query": kql, "range": filters.range if filters else ""})

        def tx_link(operation_id: str) -> str:
            range_ = f"?{urlencode({'range': filters.range})}" if filters else ""
            return f"{base}/transaction/{quote(operation_id, safe='')}{range_}"

        def rows(name: str) -> list[dict[str, Any]]:
            return records(context["data"]["queries"].get(name, {}))

        ctx = {"nav": NAV, "choices": self.choices(viewer) if viewer else [], "segment": segment, "base": base,
               "csrf": viewer.session.csrf if viewer and viewer.session else "", "ranges": queries.RANGES,
               "link": link, "logs_link": logs_link, "tx_link": tx_link, "rows": rows,
               "page": context.get("data", {}).get("page", ""), "quote": quote, **context}
        html = self.env.get_template(template).render(ctx)
        if request.headers.get("x-studio-partial"):  # the studio's script swaps the body only
            html = html[html.index(BODY_START) + len(BODY_START):html.index(BODY_END)]
        return HTMLResponse(html, status_code=status)


# ------------------------------------------------------------------ helpers
def _wants_data(request: Request) -> bool:
    path = request.url.path
    return path.endswith((".json", ".csv", "/stream")) or "x-api-key" in request.headers


def _joined(kql: str, read: list[tuple[tuple[datetime, datetime], Result]], complete: bool) -> Result:
    """One result of ``kql`` from its windows' (newest first): their rows in turn, or the error that
    stopped them; ``complete``, how far back it read (``searched_from``) and each window read."""
    last = read[-1][1]
    joined: Result = {"kql": kql, "elapsed_ms": round(sum(r["elapsed_ms"] for _, r in read), 1)}
    if "error" in last:
        joined["error"] = last["error"]
    else:
        joined["columns"] = last["columns"]
        joined["rows"] = [row for _, r in read for row in r["rows"]]
    joined["complete"] = complete
    joined["searched_from"] = queries.iso(read[-1][0][0], "microseconds")
    joined["windows"] = [{"start": queries.iso(w[0], "microseconds"), "end": queries.iso(w[1], "microseconds"),
                          "rows": len(r.get("rows", [])), "elapsed_ms": r["elapsed_ms"]} for w, r in read]
    return joined


def _seconds(window: tuple[datetime, datetime]) -> float:
    return (window[1] - window[0]).total_seconds()


def _fixed(filters: queries.Filters, **changes: str | None) -> str:
    """The query string of ``filters`` (with ``changes``) with their range as its two instants, so
    that a part fetched later counts the very range of the page that asked for it."""
    span = "/".join(queries.iso(at, "microseconds") for at in filters.span)
    return urlencode(filters.params(range=span, **changes))


def _instant(text: str, name: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"'{name}' must be an ISO 8601 time, such as 2024-05-01T10:00:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _search_queries(filters: queries.Filters) -> dict[str, str]:
    types = filters.get("types")
    return queries.search(filters, types.split(",") if types else [])


def _administers(viewer: Viewer) -> bool:
    return viewer.session is not None and viewer.session.administers


def _split_format(name: str) -> tuple[str, str]:
    for fmt in ("json", "csv"):
        if name.endswith("." + fmt):
            return name[:-len(fmt) - 1], fmt
    return name, "html"


def _params(request: Request) -> dict[str, str]:
    """Query parameters; one given several times (checkboxes) is joined with commas."""
    params = request.query_params
    return {name: ",".join(params.getlist(name)) for name in params}


async def _json_body(request: Request) -> dict[str, str]:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_QUERY + 4096:
            raise BadRequest(f"the body is larger than {MAX_QUERY + 4096} bytes")
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise BadRequest('the body must be JSON: {"query": "...", "range": "PT1H"}') from None
    if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
        raise BadRequest('the body must be a JSON object of strings: {"query": "...", "range": "PT1H"}')
    return body


def _limit(text: str | None, most: int, default: int | None) -> int:
    if not text:
        return min(default or most, most)
    if not text.isdigit() or int(text) < 1:
        raise BadRequest("'limit' must be a whole number of rows, at least 1")
    return min(int(text), most)


def _csv(result: Result) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c["name"] for c in result["columns"]])
    writer.writerows([[csv_cell(v) for v in row] for row in result["rows"]])
    return out.getvalue()


def _json(data: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    timing = {"server-timing": f"total;dur={data['elapsed_ms']}"} if "elapsed_ms" in data else {}
    return Response(json_bytes(data), status_code=status, media_type="application/json",
                    headers={**timing, **(headers or {})})


def _safe_next(target: str) -> str:
    """Where to go after the login: a studio path only (never another site)."""
    return target if target.startswith("/studio/") and not target.startswith("//") and "\\" not in target else ""


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def studio_routes(host: Host) -> list[BaseRoute]:
    """The studio's routes, mounted at ``/studio`` of the hub ``host``."""
    return Studio(host).routes()

