"""Python clients for the HTTP API of `memory-agent serve`: `MemoryClient` (blocking) and
`AsyncMemoryClient` (asyncio), both over httpx.

The method names are those of `MemoryService` and `CaseMemory` where they overlap:
`retrieve`, `record` (and `add`, CaseMemory's name for it), `report_outcome`, `list` (and
`list_cases`), `get`, `delete`, `stats`. A refused request raises `ApiError` (a
`MemoryAgentError`) carrying the server's message; not-found and bad-input errors are also
`CaseNotFoundError` and `InvalidInputError`, as the store would raise them::

    with MemoryClient("http://127.0.0.1:8765", token="...") as memory:
        found = memory.retrieve("reverse a list in python", namespace="me")
        ...
        memory.report_outcome(found["retrieval_id"], 1.0, [found["cases"][0]["case_id"]])
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memory_agent.errors import (
    CaseNotFoundError,
    InvalidInputError,
    MemoryAgentError,
    NamespaceAccessError,
)

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8765"


class ApiError(MemoryAgentError):
    """The server refused a request; `status` is the HTTP status, `kind` the error type and
    the message the server's explanation."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class ApiNotFoundError(ApiError, CaseNotFoundError):
    """404: no such case (or namespace, or endpoint)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ApiInputError(ApiError, InvalidInputError):
    """400, 413, 415 or 422: the request was malformed; the message says how to fix it."""


class ApiAuthError(ApiError):
    """401: the token is missing or wrong."""


class ApiForbiddenError(ApiError, NamespaceAccessError):
    """403: the namespace has an access token and the request did not carry it (or a wrong
    one): pass `namespace_token=`."""


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _result(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
        kind, message = str(error["type"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        kind, message = "http_error", f"HTTP {response.status_code}: {response.text[:500]}"
    status = response.status_code
    if status == 404:
        raise ApiNotFoundError(status, kind, message)
    if status == 401:
        raise ApiAuthError(status, kind, message)
    if status == 403:
        raise ApiForbiddenError(status, kind, message)
    if status in (400, 413, 415, 422):
        raise ApiInputError(status, kind, message)
    raise ApiError(status, kind, message)


class _Calls:
    """The requests each operation makes; the sync and async clients send them."""

    namespace: str | None

    def _ns(self, namespace: str | None) -> str | None:
        return namespace if namespace is not None else self.namespace

    def _retrieve(self, task: str, namespace: str | None, k: int | None,
                  vector: Sequence[float] | None) -> _Call:  # fmt: skip
        body = {"task": task, "namespace": self._ns(namespace), "k": k,
                "vector": None if vector is None else [float(x) for x in vector]}  # fmt: skip
        return _Call("POST", "/v1/retrieve", _without_none(body))

    def _record(self, task: str, plan: str | None, answer: str | None, reward: float | None,
                namespace: str | None) -> _Call:  # fmt: skip
        body = {"task": task, "plan": plan, "answer": answer, "reward": reward,
                "namespace": self._ns(namespace)}  # fmt: skip
        return _Call("POST", "/v1/cases", _without_none(body))

    @staticmethod
    def _outcome(retrieval_id: str, reward: float, used: Sequence[int] | None) -> _Call:
        body = {"retrieval_id": retrieval_id, "reward": reward,
                "used_case_ids": None if used is None else list(used)}  # fmt: skip
        return _Call("POST", "/v1/outcomes", _without_none(body))

    def _list(self, namespace: str | None, limit: int) -> _Call:
        return _Call("GET", "/v1/cases", params=_without_none(
            {"namespace": self._ns(namespace), "limit": limit}))  # fmt: skip

    def _one(self, method: str, case_id: int, namespace: str | None) -> _Call:
        return _Call(method, f"/v1/cases/{int(case_id)}",
                     params=_without_none({"namespace": self._ns(namespace)}))  # fmt: skip

    def _stats(self, namespace: str | None) -> _Call:
        return _Call("GET", "/v1/stats", params=_without_none({"namespace": self._ns(namespace)}))

    def _gaps(self, namespace: str | None, options: dict[str, Any]) -> _Call:
        params = _without_none({"namespace": self._ns(namespace), **options})
        return _Call("GET", "/v1/gaps", params=params)


def _headers(token: str | None, namespace_token: str | None) -> dict[str, str]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if namespace_token is not None:
        headers["X-Namespace-Token"] = namespace_token
    return headers


class MemoryClient(_Calls):
    """A blocking client for the memory's HTTP API. `namespace` is the default for calls
    that name none (None: the server's default); `namespace_token` is sent with every call
    (`X-Namespace-Token`) for a namespace that has an access token."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        namespace: str | None = None,
        namespace_token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.namespace = namespace
        self._http = httpx.Client(base_url=base_url, headers=_headers(token, namespace_token),
                                  timeout=timeout, transport=transport)  # fmt: skip

    def _send(self, call: _Call) -> Any:
        return _result(self._http.request(call.method, call.path, json=call.json,
                                          params=call.params or None))  # fmt: skip

    def retrieve(self, task: str, namespace: str | None = None, k: int | None = None,
                 vector: Sequence[float] | None = None) -> dict[str, Any]:  # fmt: skip
        """The policy's choice of cases for `task`, with reasons and a `retrieval_id`."""
        return self._send(self._retrieve(task, namespace, k, vector))  # type: ignore[no-any-return]

    def record(self, task: str, plan: str | None = None, answer: str | None = None,
               reward: float | None = None, namespace: str | None = None) -> int:  # fmt: skip
        """Store a case; its id."""
        return int(self._send(self._record(task, plan, answer, reward, namespace))["case_id"])

    def add(self, task: str, *, plan: str | None = None, answer: str | None = None,
            reward: float | None = None, namespace: str | None = None) -> int:  # fmt: skip
        """`record` with CaseMemory.add's keyword arguments; the new case's id."""
        return self.record(task, plan, answer, reward, namespace)

    def report_outcome(self, retrieval_id: str, reward: float,
                       used_case_ids: Sequence[int] | None = None) -> dict[str, Any]:  # fmt: skip
        """Apply a retrieval's reward; the shown cases' learned values after the update."""
        return self._send(self._outcome(retrieval_id, reward, used_case_ids))  # type: ignore[no-any-return]

    def list(self, namespace: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The namespace's newest cases."""
        return self._send(self._list(namespace, limit))["cases"]  # type: ignore[no-any-return]

    def list_cases(
        self, namespace: str | None = None, *, limit: int = 20
    ) -> builtins.list[dict[str, Any]]:
        return self.list(namespace, limit)

    def get(self, case_id: int, namespace: str | None = None) -> dict[str, Any]:
        return self._send(self._one("GET", case_id, namespace))  # type: ignore[no-any-return]

    def delete(self, case_id: int, namespace: str | None = None) -> None:
        self._send(self._one("DELETE", case_id, namespace))

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        return self._send(self._stats(namespace))  # type: ignore[no-any-return]

    def gaps(self, namespace: str | None = None, **options: Any) -> dict[str, Any]:
        """Kinds of task that keep failing (`GET /v1/gaps`); options: last, similar,
        min_runs, max_rate."""
        return self._send(self._gaps(namespace, options))  # type: ignore[no-any-return]

    def health(self) -> dict[str, Any]:
        return self._send(_Call("GET", "/health"))  # type: ignore[no-any-return]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MemoryClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AsyncMemoryClient(_Calls):
    """`MemoryClient` for asyncio: the same methods, awaited."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        namespace: str | None = None,
        namespace_token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        import httpx

        self.namespace = namespace
        self._http = httpx.AsyncClient(base_url=base_url, headers=_headers(token, namespace_token),
                                       timeout=timeout, transport=transport)  # fmt: skip

    async def _send(self, call: _Call) -> Any:
        return _result(await self._http.request(call.method, call.path, json=call.json,
                                                params=call.params or None))  # fmt: skip

    async def retrieve(self, task: str, namespace: str | None = None, k: int | None = None,
                       vector: Sequence[float] | None = None) -> dict[str, Any]:  # fmt: skip
        return await self._send(self._retrieve(task, namespace, k, vector))  # type: ignore[no-any-return]

    async def record(self, task: str, plan: str | None = None, answer: str | None = None,
                     reward: float | None = None, namespace: str | None = None) -> int:  # fmt: skip
        body = await self._send(self._record(task, plan, answer, reward, namespace))
        return int(body["case_id"])

    async def add(self, task: str, *, plan: str | None = None, answer: str | None = None,
                  reward: float | None = None, namespace: str | None = None) -> int:  # fmt: skip
        return await self.record(task, plan, answer, reward, namespace)

    async def report_outcome(
        self, retrieval_id: str, reward: float, used_case_ids: Sequence[int] | None = None
    ) -> dict[str, Any]:
        return await self._send(self._outcome(retrieval_id, reward, used_case_ids))  # type: ignore[no-any-return]

    async def list(self, namespace: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        return (await self._send(self._list(namespace, limit)))["cases"]  # type: ignore[no-any-return]

    async def list_cases(self, namespace: str | None = None, *,
                         limit: int = 20) -> builtins.list[dict[str, Any]]:  # fmt: skip
        return await self.list(namespace, limit)

    async def get(self, case_id: int, namespace: str | None = None) -> dict[str, Any]:
        return await self._send(self._one("GET", case_id, namespace))  # type: ignore[no-any-return]

    async def delete(self, case_id: int, namespace: str | None = None) -> None:
        await self._send(self._one("DELETE", case_id, namespace))

    async def stats(self, namespace: str | None = None) -> dict[str, Any]:
        return await self._send(self._stats(namespace))  # type: ignore[no-any-return]

    async def gaps(self, namespace: str | None = None, **options: Any) -> dict[str, Any]:
        """Kinds of task that keep failing (`GET /v1/gaps`); options: last, similar,
        min_runs, max_rate."""
        return await self._send(self._gaps(namespace, options))  # type: ignore[no-any-return]

    async def health(self) -> dict[str, Any]:
        return await self._send(_Call("GET", "/health"))  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncMemoryClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()
