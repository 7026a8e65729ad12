"""Plain HTTP GET routes for job state: what a status page, a monitoring script or `curl` polls.

A Gradio API call is two HTTP requests (POST, then a server-sent-events GET) and ~20-50 ms of server CPU; these
routes answer the same JSON as `/job_status` and `/list_jobs` in one GET and ~1 ms, so twenty pollers do not
slow a training job sharing the box. The access rule is the app's (access.py): members only on a Space; the
caller is identified the same way as for any event (OAuth session cookie, else `Authorization: Bearer <token>`).

  GET /api/v1/jobs?limit=100            -> the /list_jobs rows
  GET /api/v1/jobs/{job_id}?series=0    -> the /job_status object
"""
from __future__ import annotations

from typing import Any, Callable

from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from ..access import AccessDenied, identify_request, is_member, member_only_message, reset_caller, set_caller
from ..jobs.store import JobNotFound
from .api import MAX_LIST
from .service import StudioService

REST_PREFIX = "/api/v1"


def _answer(request: Request, read: Callable[[], Any]) -> JSONResponse:
    try:
        ident = identify_request(request)
    except AccessDenied as exc:
        return JSONResponse({"error": str(exc)}, status_code=401)
    if not is_member(ident):
        return JSONResponse({"error": member_only_message(ident)}, status_code=403)
    token = set_caller(ident)
    try:
        return JSONResponse(read())
    except JobNotFound as exc:
        return JSONResponse({"error": f"{exc}; GET {REST_PREFIX}/jobs lists the job ids"}, status_code=404)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    finally:
        reset_caller(token)


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def job_routes(service: StudioService) -> list[APIRoute]:
    """The routes, to pass to the app's FastAPI constructor (`launch(app_kwargs={"routes": ...})`)."""

    def list_jobs(request: Request, limit: int = 100) -> JSONResponse:
        return _answer(request, lambda: service.list_jobs(max(1, min(int(limit), MAX_LIST))))

    def job_status(request: Request, job_id: str, series: str = "0") -> JSONResponse:
        return _answer(request, lambda: service.status(job_id, _flag(series)))

    return [APIRoute(f"{REST_PREFIX}/jobs", list_jobs, methods=["GET"], include_in_schema=False),
            APIRoute(f"{REST_PREFIX}/jobs/{{job_id}}", job_status, methods=["GET"], include_in_schema=False)]
