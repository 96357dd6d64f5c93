"""Declare each endpoint once; the registry wires it into aiohttp with authentication, role check and
body validation, and renders the OpenAPI 3.1 document from the same declarations."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from command_center.auth import Access, authenticate, authorise
from core.errors import AppError, InvalidJson, UnsupportedMediaType, ValidationFailed

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)

_BODY = web.RequestKey("validated_body", BaseModel)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    access: frozenset[Access] | None  # None: public (no token)
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[type[AppError], ...] = ()

    @property
    def public(self) -> bool:
        return self.access is None


@dataclass
class Registry:
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        access: frozenset[Access] | None,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[type[AppError], ...] = (),
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(Endpoint(method, path, handler, summary, tag, access, body, response, status, errors))
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _guarded(endpoint))


def _guarded(endpoint: Endpoint) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if endpoint.access is not None:
            caller = await authenticate(request)
            authorise(caller, endpoint.access)
        if endpoint.body is not None:
            request[_BODY] = await read_model(request, endpoint.body)
        return await endpoint.handler(request)

    handle.__name__ = endpoint.handler.__name__
    return handle


async def read_model(request: web.Request, model: type[M]) -> M:
    """Parse a JSON body into ``model``.

    415 for another content type, 400 for bad JSON, 413 past the size limit, 422 for bad fields.
    """
    if request.content_type != "application/json":
        raise UnsupportedMediaType(f"expected Content-Type application/json, got {request.content_type or 'none'}")
    raw = await request.read()  # aiohttp enforces client_max_size here (413)
    data = parse_json(raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        first = problems[0]
        raise ValidationFailed(f"{first['field']}: {first['problem']}", details=problems) from None


#: ``\u0000`` after an odd number of backslashes: the only way a NUL gets into a JSON string (a raw one is
#: refused by the parser). PostgreSQL cannot store one (a 500 before) and SQLite cuts texts at one.
ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def parse_json(raw: bytes) -> Any:
    """Parse an untrusted JSON body, or raise ``InvalidJson`` (400) with the reason.

    Beside syntax errors, ``json`` fails on what a hostile body can hold: an integer of more than 4,300
    digits (``ValueError``, CPython's guard against quadratic int parsing) and nesting deeper than the
    recursion limit (``RecursionError``, raised by the C scanner before the stack is at risk). Both bound the
    work: the size limit caps the body, the recursion limit its depth.
    """
    if ESCAPED_NUL.search(raw):
        raise InvalidJson("body holds a NUL character (\\u0000), which no text here may hold")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidJson(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidJson("body is nested too deeply") from None
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion ..."
        raise InvalidJson(f"body is not acceptable JSON: {str(exc).split(';')[0]}") from None


def body(request: web.Request, model: type[M]) -> M:
    """The validated body of this request, as declared on its endpoint."""
    value = request[_BODY]
    if not isinstance(value, model):
        raise TypeError(f"endpoint body is {type(value).__name__}, not {model.__name__}")
    return value


def json_response(model: BaseModel | list[Any] | dict[str, Any], status: int = 200) -> web.Response:
    if isinstance(model, BaseModel):
        text = model.model_dump_json()
    else:
        text = json.dumps(model, ensure_ascii=False, default=str)
    return web.Response(text=text, status=status, content_type="application/json")


def openapi_document(registry: Registry, *, title: str, version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for endpoint in registry.endpoints:
        models.update(m for m in (endpoint.body, endpoint.response) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, schemas = models_json_schema(
        [(m, "validation" if m is not ErrorBody else "serialization") for m in ordered],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in registry.endpoints:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "tags": [endpoint.tag],
            "operationId": endpoint.handler.__name__,
            "responses": {},
        }
        params = [seg[1:-1] for seg in endpoint.path.split("/") if seg.startswith("{")]
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
            ]
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{endpoint.body.__name__}"}}},
            }
        ok: dict[str, Any] = {"description": "OK"}
        if endpoint.response is not None:
            ok["content"] = {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{endpoint.response.__name__}"}}
            }
        operation["responses"][str(endpoint.status)] = ok
        error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        statuses = {e.status: e.__doc__ or e.code for e in endpoint.errors}
        if endpoint.body is not None:
            statuses.update({400: "malformed JSON", 413: "body too large", 415: "not JSON", 422: "invalid fields"})
        if endpoint.access is not None:
            operation["security"] = [{"bearer": []}]
            operation["x-roles"] = sorted(endpoint.access)
            statuses.update({401: "missing, unknown, revoked or expired token", 403: "role not allowed"})
        for status, text in sorted(statuses.items()):
            operation["responses"][str(status)] = {"description": text, "content": error_ref}
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail
