"""Domain errors and the handlers that turn them into clear HTTP answers.

Services raise these; routers never build error responses themselves. Every error
body is ``{"detail": ...}``: a string, or for 422 a list of ``{loc, msg, type}`` items
naming the field, exactly like FastAPI's own request validation errors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

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


class Invalid(ServiceError):
    """A semantic validation error on one field: 422 with the field path."""

    status = 422

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = list(loc)


def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if isinstance(exc, Invalid):
        body = {"detail": [{"loc": exc.loc, "msg": exc.message, "type": "value_error"}]}
        return JSONResponse(body, status_code=422)
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)


def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    # Root causes are checked in the services; this is the last line of defence when
    # two requests race (e.g. two creates of the same name).
    log.warning("integrity error reached the handler: %s", exc)
    return JSONResponse(
        {"detail": "the request conflicts with the current state (a concurrent change?)"},
        status_code=409,
    )


def _data_error(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("data error reached the handler: %s", exc)
    return JSONResponse(
        {"detail": [{"loc": ["body"], "msg": "a value is out of range for storage",
                     "type": "value_error"}]},
        status_code=422,
    )


def _operational_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", exc)
    return JSONResponse({"detail": "the database is busy or unavailable; retry"}, status_code=503)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": items}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(OperationalError, _operational_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
