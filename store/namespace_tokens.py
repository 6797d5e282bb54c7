"""Per-namespace access tokens: a namespace may be given a token, and every operation on it
must then present that token; namespaces without one are open, as before.

A token is 32 random bytes (URL-safe text), handed out once when it is set or rotated. The
database keeps only `scrypt$<n>$<r>$<p>$<salt>$<hash>`: a fresh random salt per token, and
the parameters, so they can be raised later without breaking stored hashes. Presented tokens
are compared in constant time.

What a process knows about each namespace's token is cached for
`store.index_sync_interval` seconds (the same bound within which it sees other processes'
cases), so operations cost no extra round trip: a token set, rotated or removed by another
process applies here within that interval; in the process that changed it, at once. A refusal always
rests on a fresh read, so a token that was just set elsewhere works at once. A token
verified once against a stored hash is remembered (by a keyed fingerprint, never in clear)
until that hash changes, so scrypt runs once per token, not per operation; verifications
run one at a time, which bounds what a flood of wrong tokens can cost.

The token protects a namespace from clients of the store (the library, the CLI, the HTTP
service); whoever can write to the database itself can always clear `namespaces.token_hash`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from memory_agent.errors import InvalidInputError, NamespaceAccessError, StoreBusyError
from memory_agent.store.models import NamespaceRow, utcnow
from memory_agent.store.rows import ensure_namespace

TOKEN_PREFIX: Final = "mans_"
"""Every token starts with it, so secret scanners and people can tell what it is."""
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1  # 16 MiB and ~50 ms per hash
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_FAILED_KEEP = 256
_UNSET: Final = object()

HOW_TO_PRESENT = (
    "present it: namespace_token= in Python, MEMORY_AGENT_NAMESPACE_TOKEN or --namespace-token "
    "in the CLI, the X-Namespace-Token header over HTTP"
)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(token: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        token.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32
    )


def hash_token(token: str) -> str:
    """The stored form of `token`: scrypt with a fresh random salt, parameters included."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(token, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def token_matches(token: str, stored: str) -> bool:
    """Whether `token` is the one `stored` was made from (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(token, _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(computed, _unb64(digest))
    except (ValueError, TypeError):  # a damaged hash opens nothing
        return False


def check_presented(token: object) -> str | None:
    """A presented token as text (None or empty: none), or a clear error."""
    if token is None:
        return None
    if hasattr(token, "get_secret_value"):  # a pydantic SecretStr
        token = token.get_secret_value()
    if not isinstance(token, str):
        raise InvalidInputError(
            f"A namespace token must be text; got {type(token).__name__}. Use the token "
            "`memory-agent memory namespace token set` printed."
        )
    token = token.strip()
    return token or None


class NamespaceAccess:
    """Which namespaces have a token, whether the token presented opens them, and changing
    a namespace's token (set, rotate, remove). One per `CaseMemory`."""

    def __init__(
        self, sessions: sessionmaker[Session], token: object, refresh_after: float
    ) -> None:
        self.sessions = sessions
        self.own = check_presented(token)
        self.refresh_after = refresh_after
        # A token presented for the operations inside `presenting` (a server: per request).
        self.presented_here: ContextVar[object] = ContextVar(
            f"namespace_token_{id(self)}", default=_UNSET
        )
        self.known: dict[str, tuple[float, str | None]] = {}  # ns -> (read at, stored hash)
        self.key = secrets.token_bytes(32)  # fingerprints of tokens, never the tokens
        self.opened: set[tuple[str, str, bytes]] = set()  # (ns, stored hash, fingerprint)
        self.refused: dict[tuple[str, str, bytes], None] = {}  # the same, for wrong ones
        self.verifying = threading.Lock()

    # ------------------------------------------------------------------ presenting

    def presented(self) -> str | None:
        value = self.presented_here.get()
        return self.own if value is _UNSET else check_presented(value)

    @contextmanager
    def presenting(self, token: str | None) -> Iterator[None]:
        """Operations in this block present `token` (None: none) instead of the store's own;
        for a server acting for many callers, one request at a time per thread."""
        mark = self.presented_here.set(check_presented(token))
        try:
            yield
        finally:
            self.presented_here.reset(mark)

    # ------------------------------------------------------------------ checking

    def stored_hash(self, namespace: str, *, fresh: bool = False) -> str | None:
        """The namespace's stored token hash (None: open), read again once the cached one is
        older than `refresh_after` seconds."""
        now = time.monotonic()
        cached = self.known.get(namespace)
        if not fresh and cached is not None and now - cached[0] < self.refresh_after:
            return cached[1]
        with self.sessions() as session:
            stored = session.scalar(
                select(NamespaceRow.token_hash).where(NamespaceRow.name == namespace)
            )
        self.known[namespace] = (now, stored)
        return stored

    def protected(self, namespace: str) -> bool:
        return self.stored_hash(namespace) is not None

    def may_open(self, namespace: str) -> bool:
        """Whether the token presented opens `namespace` (always, for an open one)."""
        presented = self.presented()
        stored = self.stored_hash(namespace)
        if stored is None or self._opens(namespace, stored, presented):
            return True
        # Refusals rest on what the database holds now, never on the cache: the token may
        # have been rotated or removed since it was read.
        stored = self.stored_hash(namespace, fresh=True)
        return stored is None or self._opens(namespace, stored, presented)

    def check(self, namespace: str) -> None:
        """Pass if `namespace` is open or the presented token opens it; else a clear error
        (before the operation does anything)."""
        if self.may_open(namespace):
            return
        presented = self.presented()
        if presented is None:
            raise NamespaceAccessError(
                f"Namespace {namespace!r} is protected by an access token and none was given; "
                f"{HOW_TO_PRESENT}. Nothing was done."
            )
        raise NamespaceAccessError(
            f"The access token given for namespace {namespace!r} is wrong (it may have been "
            f"rotated); present its current token ({HOW_TO_PRESENT}). Nothing was done."
        )

    def check_all(self, what: str) -> None:
        """For an operation on every namespace (`what`, e.g. "export every namespace"):
        refuse unless the presented token opens each protected one."""
        with self.sessions() as session:
            rows = session.execute(
                select(NamespaceRow.name, NamespaceRow.token_hash)
                .where(NamespaceRow.token_hash.is_not(None))
                .order_by(NamespaceRow.name)
            ).all()
        now, presented = time.monotonic(), self.presented()
        closed = []
        for name, stored in rows:
            self.known[name] = (now, stored)
            if stored is not None and not self._opens(name, stored, presented):
                closed.append(name)
        if closed:
            raise NamespaceAccessError(
                f"Cannot {what}: namespace(s) {', '.join(map(repr, closed))} are protected by an "
                "access token the caller did not present. Name one namespace at a time and "
                f"present its token ({HOW_TO_PRESENT}). Nothing was done."
            )

    def _opens(self, namespace: str, stored: str, presented: str | None) -> bool:
        if presented is None:
            return False
        fingerprint = hmac.new(self.key, presented.encode("utf-8"), hashlib.sha256).digest()
        key = (namespace, stored, fingerprint)
        if key in self.opened:
            return True
        if key in self.refused:
            return False
        with self.verifying:  # one scrypt at a time: 16 MiB each, and CPU
            matches = token_matches(presented, stored)
        if matches:
            self.opened.add(key)
        else:
            self.refused[key] = None
            while len(self.refused) > _FAILED_KEEP:
                del self.refused[next(iter(self.refused))]
        return matches

    # ------------------------------------------------------------------ changing

    def set(self, namespace: str) -> str:
        """Give an open namespace (created if need be) a new token; returns it, the only time
        it is shown."""
        with self.sessions.begin() as session:
            ensure_namespace(session, namespace)
        stored = self.stored_hash(namespace, fresh=True)
        if stored is not None:
            raise InvalidInputError(
                f"Namespace {namespace!r} already has an access token; to replace it, rotate it "
                "(`memory-agent memory namespace token rotate`, presenting the current one)."
            )
        return self._replace(namespace, None, new_token())

    def rotate(self, namespace: str) -> str:
        """Replace a namespace's token, presenting the current one; returns the new one."""
        stored = self._held(namespace, "rotate")
        return self._replace(namespace, stored, new_token())

    def remove(self, namespace: str) -> None:
        """Make a namespace open again, presenting its current token."""
        stored = self._held(namespace, "remove")
        self._replace(namespace, stored, None)

    def _held(self, namespace: str, what: str) -> str:
        """The namespace's current stored hash, once the presented token is shown to open it."""
        stored = self.stored_hash(namespace, fresh=True)
        if stored is None:
            raise InvalidInputError(
                f"Namespace {namespace!r} has no access token to {what}; give it one with "
                "`memory-agent memory namespace token set`."
            )
        self.check(namespace)
        return stored

    def _replace(self, namespace: str, old: str | None, token: str | None) -> str:
        """Store the hash of `token` (None: remove) if the stored hash is still `old`: two
        changes at once cannot both win, and the loser is told."""
        stored = None if token is None else hash_token(token)
        condition = (
            NamespaceRow.token_hash.is_(None) if old is None else NamespaceRow.token_hash == old
        )
        with self.sessions.begin() as session:
            result = session.execute(
                update(NamespaceRow)
                .where(NamespaceRow.name == namespace, condition)
                .values(token_hash=stored, token_changed_at=utcnow())
            )
            changed = int(getattr(result, "rowcount", 0) or 0)
        if changed != 1:
            self.known.pop(namespace, None)
            raise StoreBusyError(
                f"The access token of namespace {namespace!r} was changed by someone else at the "
                "same moment; nothing was changed here. Look at it again and retry."
            )
        self.known[namespace] = (time.monotonic(), stored)
        return token or ""
