"""The one Redis boundary: every Redis client edgematch builds, and every Redis error.

:func:`redis_client` builds the client of every process (workers, intake, beat, the CLI,
status, metrics, health, the local stack, the benchmarks). The client is a
``redis.Redis`` whose every way to the server raises ``RedisUnavailable`` — a
``TransientError`` — instead of redis-py's own errors:

- single commands, and the iterators built on them (``scan_iter``, ``hscan_iter`` …):
  ``execute_command``;
- pipelines and MULTI/EXEC, including the script loads a pipeline does first:
  ``Pipeline.execute`` and ``Pipeline.immediate_execute_command``;
- Lua scripts (``register_script``): ``EVALSHA``, and ``SCRIPT LOAD`` when the server
  forgot the script (a restart, a failover to a replica that never saw it) — a script the
  server does not know is loaded again here, not raised;
- locks (``lock``): redis-py raises ``LockError`` itself when a lock is no longer held;
  that is :class:`LockNotOwned`.

So a restart, a Sentinel failover (``READONLY`` from a demoted master, a master not found),
a timeout, ``BUSY`` (a long script), ``LOADING``, ``OOM``/``MISCONF`` (writes refused) and
a bad reply all reach the caller as one class, which the task failure policy retries
(recovery/policy.py). Modules never catch redis-py's exceptions: a test fails if one does.

Messages carry the redis-py class and the server's error code (``READONLY``, ``BUSY`` …),
never the server's full message: a script's error text may quote the data it ran on.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import Any, Final, Literal, NoReturn, cast
from urllib.parse import urlsplit

import amqp.exceptions
import redis
import redis.client
import redis.commands.core
import redis.lock
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.sentinel import Sentinel

from edgematch.errors import ConfigurationError, TransientError

__all__ = [
    "BrokerUnavailable",
    "LockNotOwned",
    "Redis",
    "RedisUnavailable",
    "ScriptMissing",
    "lua_script",
    "publishing",
    "redis_client",
]


class RedisUnavailable(TransientError):
    """Redis could not serve a command now: down, restarting, failing over, busy, full.

    ``code`` is the server's error code (``READONLY``, ``BUSY`` …) when it answered with an
    error, else None (no answer: refused, reset, timed out).
    """

    reason = "redis_unavailable"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ScriptMissing(RedisUnavailable):
    """The server does not know a script by its SHA (``NOSCRIPT``); :class:`Script` loads
    it again and does not let this through."""


class LockNotOwned(TransientError):
    """The lock is not (or no longer) held by its caller: it expired, or was never taken."""

    reason = "lock_not_owned"


class BrokerUnavailable(TransientError):
    """The broker refused or could not take a task being published."""

    reason = "broker_unavailable"


def _code(exc: redis.RedisError) -> str | None:
    """The server's error code (``READONLY``, ``BUSY`` …), None when it did not answer.

    redis-py keeps the code of the replies it has a class for (``status_code``) and strips
    it from the message; any other error reply is ``ResponseError`` with the whole line,
    whose first word is the code.
    """
    word = getattr(exc, "status_code", None)
    if not word:
        if not isinstance(exc, redis.ResponseError) or not exc.args:
            return None
        word = str(exc.args[0]).split(" ", 1)[0]
    # Codes are short upper-case words; anything else is text we do not repeat.
    word = str(word)
    return word if word.isupper() and word.isalpha() and len(word) <= 20 else "ERR"


def _raise(exc: redis.RedisError) -> NoReturn:
    code = _code(exc)
    what = type(exc).__name__ + (f" {code}" if code else "")
    kind = ScriptMissing if isinstance(exc, redis.exceptions.NoScriptError) else RedisUnavailable
    raise kind(f"redis unavailable: {what}", code=code) from exc


class Script(redis.commands.core.Script):
    """A registered Lua script whose errors are translated, and which loads itself again
    when the server has forgotten it (redis-py's own retry looks for ``NoScriptError``,
    which this boundary no longer lets out)."""

    def __call__(
        self,
        keys: Iterable[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        client = self.registered_client if client is None else client
        keys, args = list(keys or ()), list(args or ())
        if isinstance(client, redis.client.Pipeline):
            # Loaded by the pipeline before it runs (Pipeline.load_scripts).
            client.scripts.add(self)
            return client.evalsha(self.sha, len(keys), *keys, *args)
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except ScriptMissing:
            self.sha = client.script_load(self.script)
            return client.evalsha(self.sha, len(keys), *keys, *args)


#: Share of a lock's TTL within which it is released by a plain ``DEL`` (see :class:`Lock`).
_SURELY_HELD: Final = 0.5


class Lock(redis.lock.Lock):
    """redis-py's lock, with its own ``LockError`` (the lock is not held) translated.

    Released with one command while it is surely still held: redis-py's release is a script
    that reads the token and deletes the key (three commands a lock, one a tagged result),
    which only matters once the TTL may have run out and another holder may have the key.
    A lock acquired or renewed less than half its TTL ago, counted from before the command
    was sent, cannot have expired (the server starts the TTL later still), so it is ours and
    a ``DEL`` is the same release; an older one, or one whose renewal found it gone, goes
    through redis-py's checked release. (A key lost otherwise — a failover to a replica that
    never had it — already let another holder in; the ``DEL`` may then end that one's lock.)
    """

    # Registered again through this boundary's client on first use (redis-py keeps them on
    # the class; inheriting redis-py's would run them through whichever client came first).
    lua_release = None
    lua_extend = None
    lua_reacquire = None
    #: ``time.monotonic()`` before the last successful acquire or renewal was sent.
    _confirmed_at: float | None = None

    @classmethod
    def adopt(
        cls, client: redis.Redis, name: str, token: bytes, *, timeout_s: float, sent_at: float
    ) -> Lock:
        """The lock ``name`` already taken with ``token`` by a ``SET NX PX`` the caller sent
        itself (several locks in one round trip: recovery/locks.exclusive_many), as a held
        lock: renewed, extended and released as one :meth:`acquire` took. ``sent_at``:
        ``time.monotonic()`` before that command was sent."""
        lock = cls(client, name, timeout=timeout_s, thread_local=False)
        lock.local.token = token
        lock._confirmed_at = sent_at
        return lock

    @staticmethod
    def release_many(client: redis.Redis, locks: Iterable[Lock]) -> None:
        """Release ``locks``: those surely still held (see the class) with one ``DEL`` for
        all, the others one by one through the checked release. A lock that expired or
        cannot be released expires on its own: that is not raised."""
        now = time.monotonic()
        surely: list[Lock] = []
        for lock in locks:
            confirmed, ttl = lock._confirmed_at, lock.timeout
            if (
                lock.local.token is not None
                and confirmed is not None
                and ttl
                and now - confirmed < ttl * _SURELY_HELD
            ):
                surely.append(lock)
            else:
                with contextlib.suppress(RedisUnavailable, LockNotOwned):
                    lock.release()
        if not surely:
            return
        for lock in surely:
            lock.local.token = None
            lock._confirmed_at = None
        with contextlib.suppress(RedisUnavailable):
            client.delete(*(lock.name for lock in surely))

    def do_acquire(self, token: str) -> bool:
        sent = time.monotonic()
        acquired = bool(super().do_acquire(token))
        if acquired:
            self._confirmed_at = sent
        return acquired

    def do_reacquire(self) -> Literal[True]:
        sent = time.monotonic()
        try:
            super().do_reacquire()
        except redis.exceptions.LockError:
            self._confirmed_at = None  # not ours any more: the checked release says so
            raise
        self._confirmed_at = sent
        return True

    def __enter__(self) -> Lock:
        with _lock_errors():
            return super().__enter__()  # type: ignore[return-value]

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        with _lock_errors():
            return bool(super().acquire(*args, **kwargs))

    def release(self) -> None:
        confirmed, ttl = self._confirmed_at, self.timeout
        held = self.local.token is not None and confirmed is not None and bool(ttl)
        if held and time.monotonic() - cast(float, confirmed) < cast(float, ttl) * _SURELY_HELD:
            self.local.token = None
            self._confirmed_at = None
            self.redis.delete(self.name)
            return
        with _lock_errors():
            super().release()

    def extend(self, additional_time: float, replace_ttl: bool = False) -> Literal[True]:
        with _lock_errors():
            return super().extend(additional_time, replace_ttl)

    def reacquire(self) -> Literal[True]:
        with _lock_errors():
            return super().reacquire()


@contextlib.contextmanager
def _lock_errors() -> Iterator[None]:
    try:
        yield
    except redis.exceptions.LockError as exc:
        raise LockNotOwned(f"lock not held: {type(exc).__name__}") from exc


class Pipeline(redis.client.Pipeline):
    """A pipeline whose execution raises ``RedisUnavailable`` for any Redis error.

    Commands are only queued until ``execute``; with WATCH they run at once
    (``immediate_execute_command``). Both are translated.
    """

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return super().execute(raise_on_error)
        except redis.RedisError as exc:
            _raise(exc)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            _raise(exc)


class Redis(redis.Redis):
    """``redis.Redis`` whose every command, pipeline, script and lock raises this module's
    errors (see the module docstring). Build it with :func:`redis_client`."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            _raise(exc)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        return Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)

    def register_script(self, script: Any) -> Script:
        return Script(self, script)

    def lock(self, name: str, *args: Any, **kwargs: Any) -> Lock:
        kwargs["lock_class"] = Lock
        lock: Lock = super().lock(name, *args, **kwargs)
        return lock

    def pubsub(self, **kwargs: Any) -> NoReturn:
        # A PubSub runs its own commands outside this boundary; nothing in edgematch
        # needs one (the broker is kombu's, with its own client).
        raise NotImplementedError("pub/sub is not supported through edgematch's Redis client")


def lua_script(client: redis.Redis, name: str) -> redis.commands.core.Script:
    """``client``'s handle on the Lua script ``edgematch/infra/lua/<name>.lua``.

    Read from the installed package once a process; loaded on the server at its first call
    (and again whenever the server has forgotten it, on a client of :func:`redis_client`).
    """
    return client.register_script(_lua_source(name))


@functools.cache
def _lua_source(name: str) -> str:
    """The text of one of the package's Lua scripts (a handful: kept for the process, so
    that objects built per task do not read the file each time)."""
    return resources.files("edgematch.infra").joinpath(f"lua/{name}.lua").read_text("utf-8")


def redis_client(url: str, *, sentinel_master: str | None = None, timeout_s: float = 10.0) -> Redis:
    """A pooled client with timeouts, keepalive and health checks (rediss:// verifies TLS).

    ``sentinel://[:password@]host:port[;sentinel://host:port…][/db]`` follows the master
    named ``sentinel_master`` through failovers, like the broker does. Raises
    ``ConfigurationError`` for a sentinel:// URL without a master name.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": min(5.0, timeout_s),
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry_on_timeout": True,
    }
    if not url.startswith("sentinel://"):
        return cast("Redis", Redis.from_url(url, **options))
    if not sentinel_master:
        raise ConfigurationError(
            "EDGEMATCH_SENTINEL_MASTER is required with a sentinel:// EDGEMATCH_REDIS_URL"
        )
    nodes = [urlsplit(part) for part in url.split(";") if part.strip()]
    db = int((nodes[-1].path or "/0").strip("/") or 0)
    password = next((n.password for n in nodes if n.password), None)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        [(n.hostname or "127.0.0.1", n.port or 26379) for n in nodes],
        sentinel_kwargs={"password": password, "socket_timeout": 5},
        password=password,
        db=db,
        **options,
    )
    master: Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        sentinel_master, redis_class=Redis
    )
    return master


@contextlib.contextmanager
def publishing() -> Iterator[None]:
    """Publish a task inside this block: a broker that cannot take it raises
    ``BrokerUnavailable``. kombu raises its ``OperationalError`` once its own retries are
    spent, but its Redis transport lets redis-py's errors through as they are, and on
    RabbitMQ a publish the broker refused (publisher confirms: a nack) is py-amqp's."""
    try:
        yield
    except (
        KombuOperationalError,
        redis.RedisError,
        amqp.exceptions.AMQPError,
        amqp.exceptions.MessageNacked,
    ) as exc:
        raise BrokerUnavailable(f"broker unavailable: {type(exc).__name__}") from exc
