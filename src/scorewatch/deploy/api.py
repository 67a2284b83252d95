"""The hub's control API: deployments (``/v1/services``), models (``/v1/models``) and compute targets
(``/v1/computes``). The SDK, the CLI and the studio all go through it; see docs/deployments.md.

Every route needs ``Authorization: Bearer <admin key>``, the workspace's admin key, kept in
``config.json`` (mode 0600) and made when the hub first starts; none is 401, a wrong one 403. With hub
replicas on a shared store each replica's workspace has its own admin key and each key's digest is in
the shared document ``control/admin-keys``, so any replica takes any replica's key. Keys are compared
as digests in constant time and never logged. Bad input is a 4xx JSON error naming the field
(``{"error": {"code", "message", "field"}}``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from scorewatch.deploy.models import matches
from scorewatch.deploy.records import (
    ComputeRecord,
    Deployment,
    ModelRecord,
    ServiceSpec,
    check_compute_name,
    check_model_name,
)
from scorewatch.deploy.store import Records
from scorewatch.deploy.supervisor import Supervisor, now_iso
from scorewatch.documents import UNCHANGED, CachedDocument, Documents
from scorewatch.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from scorewatch.http import error_response
from scorewatch.workspace import Workspace

MAX_BODY = 1024 * 1024
Handler = Callable[[Request], Awaitable[Response]]


def ensure_admin_key(workspace: Workspace) -> str:
    """The workspace's admin key (``config.json``, mode 0600), made on first use."""
    config = workspace.read_config()
    if not config.get("admin_key"):
        config = workspace.update_config(admin_key="swa_" + secrets.token_urlsafe(32))
    return str(config["admin_key"])


class AdminKeys:
    """The admin keys the control API takes: this workspace's, and with a shared store every
    replica's (their digests, the document ``control/admin-keys``; this one's is added at start)."""

    KEY = "control/admin-keys"

    def __init__(self, workspace: Workspace, documents: Documents) -> None:
        self.documents = documents
        own = _digest(ensure_admin_key(workspace))
        self._digests = [own]
        self._document = CachedDocument(documents, self.KEY, self._index)
        if documents.shared:
            documents.edit(self.KEY, lambda known: UNCHANGED if own.hex() in known else [*known, own.hex()], [])

    def _index(self, known: Any) -> None:
        self._digests = [bytes.fromhex(h) for h in known or []]

    def valid(self, key: str) -> bool:
        digest = _digest(key)
        if self.documents.shared and not self._holds(digest):
            self._document.refresh()
        return self._holds(digest)

    def _holds(self, digest: bytes) -> bool:
        return any([hmac.compare_digest(digest, known) for known in self._digests])  # each compared: no early out


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def compute_not_found(name: str) -> NotFound:
    """Azure's ``ComputeTargetNotFound`` error, word for word."""
    return NotFound(f"ComputeTargetNotFound: Compute Target with name {name} not found in provided workspace",
                    code="ComputeTargetNotFound")


def scoring_uri(deployment: Deployment) -> str | None:
    port = deployment.status.port
    return f"http://127.0.0.1:{port}/score" if port else None


class ControlAPI:
    def __init__(self, supervisor: Supervisor, computes: Records[ComputeRecord], admin_keys: AdminKeys) -> None:
        self.supervisor, self.computes, self.admin_keys = supervisor, computes, admin_keys

    # -- plumbing ----------------------------------------------------------------------------------
    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            try:
                await run_in_threadpool(self._authorize, request.headers.get("authorization"))
                return await handler(request)
            except Exception as exc:
                return error_response(exc)

        return guarded

    def _authorize(self, authorization: str | None) -> None:
        scheme, _, key = (authorization or "").partition(" ")
        if not key.strip() or scheme.lower() != "bearer":
            raise Unauthorized("the control API needs 'Authorization: Bearer <admin key>' (admin_key in the "
                               "workspace's config.json)")
        if not self.admits(key.strip()):
            raise Forbidden("the admin key is not valid for this workspace")

    def admits(self, key: str) -> bool:
        """Whether ``key`` is an admin key of this workspace (any replica's, with a shared store)."""
        return self.admin_keys.valid(key)

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise BadRequest(f"the body is larger than {MAX_BODY} bytes")
        try:
            body = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    def view(self, deployment: Deployment) -> dict[str, Any]:
        """A service as the API shows it: its record, where to call it, its workers' telemetry state
        (it reads files: called off the event loop, which ingest shares)."""
        uri = scoring_uri(deployment)
        return {**deployment.to_dict(), "name": deployment.name, "state": deployment.status.state,
                "scoring_uri": uri, "swagger_uri": uri.removesuffix("/score") + "/swagger.json" if uri else None,
                "telemetry": self.supervisor.telemetry(deployment)}

    # -- services ----------------------------------------------------------------------------------
    async def list_services(self, request: Request) -> Response:
        query = request.query_params
        compute_type, model_name = query.get("compute_type"), query.get("model_name")
        tags = _filters(query.get("tags"))

        def answer() -> list[dict[str, Any]]:
            return [self.view(d) for d in self.supervisor.deployments()
                    if (not compute_type or d.spec.compute_type.upper() == compute_type.upper())
                    and (not model_name or any(m.name == model_name for m in d.spec.models))
                    and matches(d.spec.tags, tags)]

        return JSONResponse({"value": await run_in_threadpool(answer)})

    async def create_service(self, request: Request) -> Response:
        body = await self._body(request)
        _known(body, ("spec", "overwrite", "keys"))
        spec = ServiceSpec.from_dict(body.get("spec"), where="spec")
        keys = body.get("keys") or {}
        if not isinstance(keys, dict):
            raise BadRequest("keys must be an object with primaryKey and secondaryKey", details={"field": "keys"})
        deployment = await run_in_threadpool(
            self.supervisor.deploy, spec, overwrite=_flag(body.get("overwrite", False), "overwrite"),
            primary_key=_text(keys.get("primaryKey"), "keys.primaryKey"),
            secondary_key=_text(keys.get("secondaryKey"), "keys.secondaryKey"))
        return JSONResponse(await run_in_threadpool(self.view, deployment), status_code=202)

    async def get_service(self, request: Request) -> Response:
        deployment = await run_in_threadpool(self.supervisor.get, request.path_params["name"])
        return JSONResponse(await run_in_threadpool(self.view, deployment))

    async def update_service(self, request: Request) -> Response:
        changes = await self._body(request)
        deployment = await run_in_threadpool(self.supervisor.update, request.path_params["name"], changes)
        return JSONResponse(await run_in_threadpool(self.view, deployment))

    async def delete_service(self, request: Request) -> Response:
        deployment = await run_in_threadpool(self.supervisor.delete, request.path_params["name"])
        return JSONResponse(await run_in_threadpool(self.view, deployment), status_code=202)

    async def service_logs(self, request: Request) -> Response:
        """``{"content": "..."}`` as Azure answers, or with ``format=lines`` each line with its place
        (``after=START:OFFSET`` gives only later lines: following a console)."""
        query = request.query_params
        tail = _count(query.get("tail", "5000"), "tail")
        init = query.get("init", "false").lower() in ("1", "true", "yes")
        after = None
        if query.get("after"):
            start, _, offset = query["after"].partition(":")
            after = (_count(start, "after"), _count(offset, "after"))
        lines = await run_in_threadpool(self.supervisor.logs, request.path_params["name"], tail, init, after)
        if query.get("format") == "lines":
            return JSONResponse({"lines": lines})
        return JSONResponse({"content": "".join(line["message"] + "\n" for line in lines)})

    async def reload_service(self, request: Request) -> Response:
        deployment = await run_in_threadpool(self.supervisor.reload, request.path_params["name"])
        return JSONResponse(await run_in_threadpool(self.view, deployment), status_code=202)

    async def service_keys(self, request: Request) -> Response:
        if request.method == "POST":  # regenerate
            body = await self._body(request)
            _known(body, ("keyType", "keyValue"))
            deployment = await run_in_threadpool(self.supervisor.regen_key, request.path_params["name"],
                                                 _text(body.get("keyType"), "keyType") or "",
                                                 _text(body.get("keyValue"), "keyValue"))
            return JSONResponse(await run_in_threadpool(self.view, deployment))
        primary, secondary = await run_in_threadpool(self.supervisor.keys, request.path_params["name"])
        return JSONResponse({"primaryKey": primary, "secondaryKey": secondary})

    # -- models ------------------------------------------------------------------------------------
    async def list_models(self, request: Request) -> Response:
        query = request.query_params
        name = query.get("name")
        if name is not None:
            check_model_name(name)
        models = await run_in_threadpool(self.supervisor.models.list, name, tags=_filters(query.get("tags")),
                                         properties=_filters(query.get("properties")),
                                         latest=query.get("latest", "false").lower() in ("1", "true", "yes"))
        return JSONResponse({"value": [m.to_dict() for m in models]})

    async def register_model(self, request: Request) -> Response:
        body = await self._body(request)
        _known(body, ("model_path", "model_name", "tags", "properties", "description"))
        path, name = _text(body.get("model_path"), "model_path"), _text(body.get("model_name"), "model_name")
        if not path or not name:
            missing = "model_path" if not path else "model_name"
            raise BadRequest(f"{missing} is required", details={"field": missing})
        record = await run_in_threadpool(
            self.supervisor.models.register, path, name, tags=_labels(body.get("tags"), "tags"),
            properties=_labels(body.get("properties"), "properties"),
            description=_text(body.get("description"), "description") or "")
        return JSONResponse(record.to_dict(), status_code=201)

    async def get_model(self, request: Request) -> Response:
        version = request.query_params.get("version")
        record: ModelRecord = await run_in_threadpool(
            self.supervisor.models.get, request.path_params["name"],
            _count(version, "version") if version is not None else None)
        return JSONResponse(record.to_dict())

    async def delete_model(self, request: Request) -> Response:
        name, version = request.path_params["name"], _count(request.path_params["version"], "version")
        users = [d.name for d in await run_in_threadpool(self.supervisor.deployments)
                 if any(m.name == name and m.version == version for m in d.spec.models)]
        if users:
            raise Conflict(f"model {name}:{version} is used by service(s) {', '.join(users)}; delete or update "
                           "them first")
        await run_in_threadpool(self.supervisor.models.delete, name, version)
        return JSONResponse({"deleted": f"{name}:{version}"})

    # -- compute targets ----------------------------------------------------------------------------
    async def list_computes(self, request: Request) -> Response:
        return JSONResponse({"value": [c.to_dict() for c in await run_in_threadpool(self.computes.list)]})

    async def compute(self, request: Request) -> Response:
        name = check_compute_name(request.path_params["name"])
        if request.method == "PUT":
            body = await self._body(request)
            record = ComputeRecord.from_dict({"type": "AKS", **body, "name": name, "created_time": now_iso()})
            await run_in_threadpool(self.computes.save, name, record)
            return JSONResponse(record.to_dict(), status_code=201)
        found = await run_in_threadpool(self.computes.load, name)
        if found is None:
            raise compute_not_found(name)
        if request.method == "DELETE":
            await run_in_threadpool(self.computes.delete, name)
        return JSONResponse(found.to_dict())

    def routes(self) -> list[BaseRoute]:
        g = self._guarded
        return [
            Route("/v1/services", g(self.list_services), methods=["GET"]),
            Route("/v1/services", g(self.create_service), methods=["POST"]),
            Route("/v1/services/{name}", g(self.get_service), methods=["GET"]),
            Route("/v1/services/{name}", g(self.update_service), methods=["PATCH"]),
            Route("/v1/services/{name}", g(self.delete_service), methods=["DELETE"]),
            Route("/v1/services/{name}/logs", g(self.service_logs), methods=["GET"]),
            Route("/v1/services/{name}/keys", g(self.service_keys), methods=["GET", "POST"]),
            Route("/v1/services/{name}/reload", g(self.reload_service), methods=["POST"]),
            Route("/v1/models", g(self.list_models), methods=["GET"]),
            Route("/v1/models", g(self.register_model), methods=["POST"]),
            Route("/v1/models/{name}", g(self.get_model), methods=["GET"]),
            Route("/v1/models/{name}/{version}", g(self.delete_model), methods=["DELETE"]),
            Route("/v1/computes", g(self.list_computes), methods=["GET"]),
            Route("/v1/computes/{name}", g(self.compute), methods=["GET", "PUT", "DELETE"]),
        ]


def _known(body: dict[str, Any], fields: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(fields)}",
                         details={"field": unknown[0]})


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{field} must be true or false", details={"field": field})
    return value


def _text(value: Any, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{field} must be a string", details={"field": field})
    return value


def _labels(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest(f"{field} must be an object of strings", details={"field": field})
    return value


def _count(value: str, field: str) -> int:
    if not value.isdigit():
        raise BadRequest(f"{field} must be a whole number >= 0, not {value!r}", details={"field": field})
    return int(value)


def _filters(value: str | None) -> list[str | list[str]]:
    """``key,key2=value`` as ``Webservice.list``/``Model.list`` filters: ``["key", ["key2", "value"]]``."""
    out: list[str | list[str]] = []
    for item in (value or "").split(","):
        if item:
            key, sep, val = item.partition("=")
            out.append([key, val] if sep else key)
    return out

