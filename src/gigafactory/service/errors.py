"""Domain errors and the handlers that turn them into clear HTTP answers.

Services raise these; routers never build error responses themselves. Every error
body is ``{"detail": ...}``: a string, or for 422 a list of ``{loc, msg, type}`` items
naming the field, exactly like FastAPI's own request validation errors.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("gigafactory.service")


class ServiceError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class BudgetExhausted(ServiceError):
    status = 402


class Unavailable(ServiceError):
    """The service cannot take this now (stopping, overloaded): 503, retry later."""

    status = 503


class Invalid(ServiceError):
    """A semantic validation error on one field: 422 with the field path."""

    status = 422

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = list(loc)


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if isinstance(exc, Invalid):
        body = {"detail": [{"loc": exc.loc, "msg": exc.message, "type": "value_error"}]}
        return JSONResponse(body, status_code=422)
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    # Root causes are checked in the services; this is the last line of defence when
    # two requests race (e.g. two creates of the same name).
    log.warning("integrity error reached the handler: %s", exc)
    return JSONResponse(
        {"detail": "the request conflicts with the current state (a concurrent change?)"},
        status_code=409,
    )


async def _data_error(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("data error reached the handler: %s", exc)
    return JSONResponse(
        {"detail": [{"loc": ["body"], "msg": "a value is out of range for storage",
                     "type": "value_error"}]},
        status_code=422,
    )


async def _operational_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", exc)
    return JSONResponse({"detail": "the database is busy or unavailable; retry"}, status_code=503)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": items}, status_code=422)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the API documents for this path (Starlette lists only the first
    route that matched). Built once from the OpenAPI paths."""
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        request.app.state, "allow_table", None
    )
    if table is None:
        table = []
        for template, ops in request.app.openapi().get("paths", {}).items():
            pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
            table.append((re.compile(f"^{pattern}$"), sorted(m.upper() for m in ops)))
        request.app.state.allow_table = table
    path = request.url.path
    return sorted({m for rx, methods in table if rx.match(path) for m in methods})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # a body that is not JSON at all: still a 422 naming it
        body = {"detail": [{"loc": ["body"], "msg": str(exc.detail), "type": "json_invalid"}]}
        return JSONResponse(body, status_code=422)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(OperationalError, _operational_error)
    app.add_exception_handler(InterfaceError, _operational_error)
    app.add_exception_handler(PoolTimeout, _operational_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
