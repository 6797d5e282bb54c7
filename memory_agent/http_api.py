"""The case memory as an HTTP API (FastAPI, served by uvicorn): `memory-agent serve`.

The same operations as the MCP server, through the same `MemoryService`:

    POST   /v1/retrieve              {task, namespace?, k?, vector?}  -> cases + retrieval_id
    POST   /v1/cases                 {task, plan?, answer?, reward?, namespace?} -> case_id
    POST   /v1/outcomes              {retrieval_id, reward, used_case_ids?} -> learned values
    GET    /v1/cases?namespace=&limit=                                -> newest cases
    GET    /v1/cases/{case_id}?namespace=                             -> one case
    DELETE /v1/cases/{case_id}?namespace=                             -> tombstone it
    GET    /v1/stats?namespace=                                       -> counts, learned values
    GET    /health                                                    -> no auth, no store

The schema is at /openapi.json (and /docs). Every error is JSON,
`{"error": {"status", "type", "message"}}`, and the message says what is wrong and how to
fix the request. With a token set, each /v1 request needs `Authorization: Bearer <token>`
(compared in constant time). A request acting on a namespace that has an access token must
carry it in `X-Namespace-Token` (403 otherwise, and nothing changes); the server presents only
the request's own token, never one from its settings. Bodies past `serve.max_request_bytes`
get 413 before they are parsed.

Each worker process opens its own service (and store) when it starts; the workers share the
database, and each store keeps its index in step with the others' writes through the
store's change log (at most `store.index_sync_interval` seconds behind).
"""

from __future__ import annotations

import hmac
import importlib
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memory_agent.errors import (
    CaseNotFoundError,
    DependencyMissingError,
    EmbedderError,
    InvalidInputError,
    MemoryAgentError,
    NamespaceAccessError,
    StoreBusyError,
    StoreConnectionError,
    UnknownNamespaceError,
)
from memory_agent.gaps import LAST, MAX_RATE, MAX_RUNS, MIN_RUNS, SIMILAR

if TYPE_CHECKING:
    from memory_agent.service import MemoryService
    from memory_agent.settings import Settings

ServiceFactory = Callable[["Settings"], "MemoryService"]

WORKER_SETTINGS_ENV = "MEMORY_AGENT_WORKER_SETTINGS_JSON"
"""How `memory-agent serve --workers N` hands its settings (flags included) to the worker
processes uvicorn starts: they build their app from this variable."""
SCHEMA_HINT = "See the schema at /openapi.json (or /docs)."


# ---------------------------------------------------------------------- request bodies


class _Body(BaseModel):
    # A misspelt field is an error, not a silently ignored one.
    model_config = ConfigDict(extra="forbid")


NamespaceField = Annotated[
    str | None,
    Field(
        description="Memory namespace (1-128 letters, digits or . _ : @ -); "
        "leave out for the server's default.",
        max_length=128,
    ),
]


NamespaceQuery = Annotated[
    str | None, Query(max_length=128, description="Namespace (default: the server's).")
]
Limit = Annotated[int, Query(ge=1, le=1000, description="Most cases to return.")]
NamespaceToken = Annotated[
    str | None,
    Header(
        alias="X-Namespace-Token",
        description="The access token of the namespace, if it has one (`memory-agent memory "
        "namespace token set`); 403 without it. Namespaces without a token need none.",
    ),
]


class RetrieveRequest(_Body):
    task: str = Field(description="The task you are about to work on.")
    namespace: NamespaceField = None
    k: int | None = Field(default=None, ge=1, le=100, description="Cases to return.")
    vector: list[float] | None = Field(
        default=None,
        description="The task's embedding by the store's embedder, if you have it: the server "
        "then skips embedding.",
    )


class RecordRequest(_Body):
    task: str = Field(description="The task that was solved (or attempted).")
    plan: str | None = Field(default=None, description="How it was solved: steps, code.")
    answer: str | None = Field(default=None, description="The final answer or result.")
    reward: float | None = Field(
        default=None, ge=0.0, le=1.0, description="How well it went: 0 failure ... 1 success."
    )
    namespace: NamespaceField = None


class OutcomeRequest(_Body):
    retrieval_id: str = Field(description="The retrieval_id that /v1/retrieve returned.")
    reward: float = Field(ge=0.0, le=1.0, description="How the task went: 0 failure ... 1 success.")
    used_case_ids: list[int] | None = Field(
        default=None,
        description="Ids of the retrieved cases that helped; leave out if unknown (every shown "
        "case then gets the reward).",
    )


class RecordResponse(BaseModel):
    case_id: int
    namespace: str


class DeleteResponse(BaseModel):
    deleted: int


# ---------------------------------------------------------------------- errors


def error_body(status: int, kind: str, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "type": kind, "message": message}}


def _error(status: int, kind: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(error_body(status, kind, message), status_code=status, headers=headers)


ERROR_STATUS: list[tuple[type[MemoryAgentError], int, str]] = [
    (CaseNotFoundError, 404, "not_found"),
    (UnknownNamespaceError, 404, "not_found"),
    (InvalidInputError, 400, "invalid_input"),
    (NamespaceAccessError, 403, "forbidden"),
    (StoreBusyError, 503, "busy"),
    (StoreConnectionError, 503, "store_unavailable"),
    (EmbedderError, 503, "embedder_unavailable"),
    (DependencyMissingError, 501, "dependency_missing"),
]


def _status_of(exc: MemoryAgentError) -> tuple[int, str]:
    for kind, status, name in ERROR_STATUS:
        if isinstance(exc, kind):
            return status, name
    return 500, "memory_error"


def _validation_message(errors: Any) -> tuple[int, str]:
    """One readable sentence per problem: where, what is wrong, what was sent."""
    problems = []
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            return 400, (
                f"The request body is not valid JSON ({ctx.get('error', 'parse error')}); send "
                "a JSON object with the header Content-Type: application/json."
            )
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        if err.get("type") == "model_attributes_type" or (
            err.get("type") == "dict_type" and where == "body"
        ):
            return 422, f"The request body must be a JSON object with named fields. {SCHEMA_HINT}"
        sent = ""
        if "input" in err and err.get("type") not in ("missing", "extra_forbidden"):
            shown = json.dumps(err["input"], default=str)
            sent = f" (got {shown[:80] + '...' if len(shown) > 80 else shown})"
        msg = err.get("msg", "invalid")
        if err.get("type") == "missing":
            msg = "is required"
        elif err.get("type") == "extra_forbidden":
            msg = "is not a field of this request (check the spelling)"
        problems.append(f"{where}: {msg}{sent}")
    return 422, f"Invalid request: {'; '.join(problems)}. {SCHEMA_HINT}"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MemoryAgentError)
    async def memory_error(_request: Request, exc: MemoryAgentError) -> JSONResponse:
        status, kind = _status_of(exc)
        return _error(status, kind, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if request.method in ("POST", "PUT", "PATCH") and "json" not in content_type:
            # Not parsed without it, on purpose: a web page could otherwise post to a local
            # server without the browser asking first (CSRF).
            return _error(415, "unsupported_media_type", "Send the body as JSON with the "
                          "header Content-Type: application/json.")  # fmt: skip
        status, message = _validation_message(exc.errors())
        return _error(status, "invalid_request", message)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"No endpoint {request.url.path}. {SCHEMA_HINT}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}. {SCHEMA_HINT}"
        return _error(exc.status_code, "http_error", message, **(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", f"Internal error ({type(exc).__name__}); the "
                      "server log has the details.")  # fmt: skip


# ---------------------------------------------------------------------- limits and auth


class BodyLimit:
    """Refuses request bodies larger than `limit` bytes with 413, before anything parses
    them: by the declared Content-Length, and by counting what arrives (a chunked body
    declares none)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self, size: str) -> JSONResponse:
        return _error(
            413, "request_too_large",
            f"The request body is {size} bytes; this server takes at most {self.limit:,}. Send "
            "less text (long material belongs in an attachment), or raise "
            "MEMORY_AGENT_SERVE_MAX_REQUEST_BYTES on the server.",
        )  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                response = _error(400, "invalid_request", "Content-Length is not a number.")
                await response(scope, receive, send)
                return
            if int(declared) > self.limit:
                await self._too_large(f"{int(declared):,}")(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(f"over {self.limit:,}")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class WorkerHeader:
    """Adds `X-Memory-Worker: <pid>` to each response: which worker process answered, so
    clients and tests can see requests spread over the workers."""

    def __init__(self, app: ASGIApp, pid: str) -> None:
        self.app = app
        self.header = (b"x-memory-worker", pid.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, with_header)


def _auth(token: str | None) -> Callable[[Request], None]:
    expected = None if token is None else token.encode("utf-8")

    def require_token(request: Request) -> None:
        if expected is None:
            return
        header = request.headers.get("authorization")
        scheme, _, given = (header or "").partition(" ")
        if not header or scheme.lower() != "bearer" or not given.strip():
            raise _Unauthorized(
                "Missing bearer token: send the header 'Authorization: Bearer <token>' with "
                "the token the server was started with (--token or MEMORY_AGENT_SERVE_TOKEN)."
            )
        if not hmac.compare_digest(given.strip().encode("utf-8"), expected):
            raise _Unauthorized(
                "The bearer token is wrong: use the token the server was started with "
                "(--token or MEMORY_AGENT_SERVE_TOKEN)."
            )

    return require_token


class _Unauthorized(Exception):
    pass


# ---------------------------------------------------------------------- the app


def create_app(settings: Settings, service_factory: ServiceFactory | None = None) -> FastAPI:
    """The API over a `MemoryService` that `service_factory(settings)` opens when the app
    starts (default: the settings' own store, with batched query embedding)."""
    factory = service_factory or resolve_factory(settings)
    holder: dict[str, MemoryService] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _one_search_thread()
        holder["service"] = factory(settings)
        try:
            yield
        finally:
            holder.pop("service").close()

    app = FastAPI(
        title="memory-agent",
        version="1",
        summary="A case memory that learns which past cases help: retrieve, record, report "
        "outcomes.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)

    @app.exception_handler(_Unauthorized)
    async def unauthorized(_request: Request, exc: _Unauthorized) -> JSONResponse:
        return _error(401, "unauthorized", str(exc), **{"WWW-Authenticate": "Bearer"})

    token = None if settings.serve.token is None else settings.serve.token.get_secret_value()
    auth = [Depends(_auth(token))]
    pid = str(os.getpid())

    def service() -> MemoryService:
        return holder["service"]

    @app.get("/health", tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness: answers without auth and without touching the store."""
        return {"status": "ok", "worker": int(pid)}

    @app.post("/v1/retrieve", dependencies=auth, tags=["memory"])
    def retrieve(body: RetrieveRequest, token: NamespaceToken = None) -> dict[str, Any]:
        """Past cases that may help with `task`, best first, chosen by the learned policy
        among the most similar stored cases, with the reasons for each and a `retrieval_id`
        to report the outcome with."""
        svc = service()
        with svc.presenting(token):
            return svc.retrieve(body.task, body.namespace, body.k, body.vector)

    @app.post("/v1/cases", dependencies=auth, tags=["memory"], status_code=201)
    def record(body: RecordRequest, token: NamespaceToken = None) -> RecordResponse:
        """Store a solved (or failed) task as a new case."""
        svc = service()
        with svc.presenting(token):
            case_id = svc.record(body.task, body.plan, body.answer, body.reward, body.namespace)
            return RecordResponse(case_id=case_id, namespace=svc.namespace_of(body.namespace))

    @app.post("/v1/outcomes", dependencies=auth, tags=["memory"])
    def report_outcome(body: OutcomeRequest, token: NamespaceToken = None) -> dict[str, Any]:
        """How a retrieval's task went: the used cases' learned values move toward the
        reward, the shown but unused ones toward the policy's unused target."""
        svc = service()
        with svc.presenting(token):
            return svc.report_outcome(body.retrieval_id, body.reward, body.used_case_ids)

    @app.get("/v1/cases", dependencies=auth, tags=["cases"])
    def list_cases(
        namespace: NamespaceQuery = None,
        limit: Limit = 20,
        token: NamespaceToken = None,
    ) -> dict[str, Any]:
        """The namespace's newest cases, with their learned values."""
        svc = service()
        with svc.presenting(token):
            return {"cases": svc.list(namespace, limit)}

    @app.get("/v1/cases/{case_id}", dependencies=auth, tags=["cases"])
    def get_case(
        case_id: int, namespace: NamespaceQuery = None, token: NamespaceToken = None
    ) -> dict[str, Any]:
        """One case with its learned values per stage."""
        svc = service()
        with svc.presenting(token):
            return svc.get(case_id, namespace)

    @app.delete("/v1/cases/{case_id}", dependencies=auth, tags=["cases"])
    def delete_case(
        case_id: int, namespace: NamespaceQuery = None, token: NamespaceToken = None
    ) -> DeleteResponse:
        """Remove a case from retrieval and listings."""
        svc = service()
        with svc.presenting(token):
            svc.delete(case_id, namespace)
        return DeleteResponse(deleted=case_id)

    @app.get("/v1/stats", dependencies=auth, tags=["cases"])
    def stats(namespace: NamespaceQuery = None, token: NamespaceToken = None) -> dict[str, Any]:
        """Counts and sizes of a namespace and the learned values of its visited cases."""
        svc = service()
        with svc.presenting(token):
            return svc.stats(namespace)

    @app.get("/v1/gaps", dependencies=auth, tags=["cases"])
    def gaps(
        namespace: NamespaceQuery = None,
        last: Annotated[
            int, Query(ge=1, le=MAX_RUNS, description="Newest rewarded runs read.")
        ] = LAST,
        similar: Annotated[
            float, Query(ge=0.0, le=1.0, description="Cosine at which tasks count as alike.")
        ] = SIMILAR,
        min_runs: Annotated[
            int, Query(ge=2, description="Fewest runs a gap is made of.")
        ] = MIN_RUNS,
        max_rate: Annotated[
            float, Query(ge=0.0, le=1.0, description="Highest success rate of a gap.")
        ] = MAX_RATE,
        token: NamespaceToken = None,
    ) -> dict[str, Any]:
        """Kinds of task that keep failing whatever the memory shows, with the cases shown
        there: where the memory needs a new worked example."""
        svc = service()
        with svc.presenting(token):
            return svc.gaps(
                namespace, last=last, similar=similar, min_runs=min_runs, max_rate=max_rate
            )

    app.add_middleware(WorkerHeader, pid=pid)
    app.add_middleware(BodyLimit, limit=settings.serve.max_request_bytes)
    return app


def _one_search_thread() -> None:
    """FAISS searches with one thread in a server: requests arrive one query at a time and
    concurrently, and OpenMP's threads would only spin against each other (a single search
    in a 2,000-case index took 13 ms with them on a busy machine, 3 ms without)."""
    try:
        import faiss
    except ImportError:  # the store imports it anyway; nothing to tune without it
        return
    faiss.omp_set_num_threads(1)


def default_service(settings: Settings) -> MemoryService:
    """The settings' own store, with concurrent queries embedded in batches."""
    from memory_agent.service import MemoryService

    return MemoryService(settings, embed_batch_size=settings.serve.embed_batch_size)


def resolve_factory(settings: Settings) -> ServiceFactory:
    """`serve.service_factory` imported (`module:function`), or `default_service`."""
    spec = settings.serve.service_factory
    if not spec:
        return default_service
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InvalidInputError(f"serve.service_factory {spec!r} must look like 'module:function'.")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(
            f"serve.service_factory {spec!r} cannot be imported ({exc}); check the name and "
            "that its module is on PYTHONPATH."
        ) from exc
    if not callable(factory):
        raise InvalidInputError(f"serve.service_factory {spec!r} is not a function.")
    return factory  # type: ignore[no-any-return]


def settings_for_workers(settings: Settings) -> str:
    """The settings as JSON for worker processes, the token in clear (a masked token would
    lock every client out)."""
    data = settings.model_dump(mode="json")
    token = settings.serve.token
    data["serve"]["token"] = None if token is None else token.get_secret_value()
    return json.dumps(data)


def app_from_env() -> Any:
    """The app of one worker process (`uvicorn --factory`), from the settings the parent
    `memory-agent serve` put in the environment."""
    from memory_agent.settings import Settings

    raw = os.environ.get(WORKER_SETTINGS_ENV)
    settings = Settings.model_validate_json(raw) if raw else Settings()
    return create_app(settings)
