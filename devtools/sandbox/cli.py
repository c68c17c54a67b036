"""``python -m devtools.sandbox``: the sandbox's command line (options, signals, exit status)."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from devtools.sandbox.config import DEFAULT_KEY, SandboxConfig
from devtools.sandbox.handler import BASE_PATH, KEY_HEADER
from devtools.sandbox.rules import DEFAULT_HASH_SIZE, parse_known_lines
from devtools.sandbox.server import Sandbox
from devtools.sandbox.state import MAX_REPORTS

__all__ = ["KEY_ENV", "build_parser", "main"]

KEY_ENV = "EDGEMATCH_SANDBOX_KEY"

_EPILOG = f"""\
API (key in the {KEY_HEADER} header), under {BASE_PATH} or the root:
  POST MatchEdgeHash   multipart/form-data, 1-5 parts; ContentId = each part's name
  POST MatchHash       JSON [{{"DataRepresentation": "Hash", "Value": "<base64>"}}, ...]
  POST Report          any JSON body, kept in memory (last {MAX_REPORTS})

Admin (JSON, no key):
  GET  /healthz              "ok"
  GET  /_sandbox/stats       counters, incl. max_accepted_in_any_1s_window
  GET  /_sandbox/config      current config (without the key)
  GET  /_sandbox/reports     recorded Report bodies
  POST /_sandbox/faults      any of: key rate hash_size fail_rate slow_rate slow_s
                             item_3004_rate drop_rate conflict_rate force_status
                             (null clears) throttle_next throttle_retry_after_s seed
  POST /_sandbox/known       {{"sha256": ["<hex digest>", ...]}}
  POST /_sandbox/reset       clear counters and reports (config is kept)

On start, prints one line, "sandbox listening on <base url>", then serves until
SIGTERM or SIGINT and exits 0.
"""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.sandbox",
        description=(
            "A local stand-in for PhotoDNA Cloud Service (MatchEdgeHash, MatchHash, Report)\n"
            "with Azure API Management's key check and rate limit, known-hash matches and\n"
            "seeded fault injection. For demos, tests and benchmarks; never production."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_listening(parser)
    _add_api_behaviour(parser)
    _add_faults(parser)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log one line per request to stderr (method, path, status, duration; no keys)",
    )
    return parser


def _add_listening(parser: argparse.ArgumentParser) -> None:
    """--host, --port."""
    net = parser.add_argument_group("listening")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    net.add_argument(
        "--port", type=int, default=0, help="port to bind; 0 picks a free one (default: 0)"
    )


def _add_api_behaviour(parser: argparse.ArgumentParser) -> None:
    """--key, --rate, --known, --hash-size."""
    api = parser.add_argument_group("API behaviour")
    api.add_argument(
        "--key",
        default=None,
        help=f"the accepted subscription key (default: ${KEY_ENV}, else {DEFAULT_KEY!r})",
    )
    api.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="accepted requests per second, sliding 1 s window; 0 = unlimited (default: 10)",
    )
    api.add_argument(
        "--known",
        metavar="FILE",
        action="append",
        default=[],
        help="file of hex SHA-256 digests of hash files that match, one per line, "
        "'#' comments allowed; may be repeated",
    )
    api.add_argument(
        "--hash-size",
        type=int,
        default=DEFAULT_HASH_SIZE,
        help="hash length in bytes; other lengths get status 3002 (default: %(default)s)",
    )


def _add_faults(parser: argparse.ArgumentParser) -> None:
    """The fault-injection options; every one can also be changed at runtime."""
    faults = parser.add_argument_group("fault injection (all can be changed at runtime)")
    faults.add_argument(
        "--fail-rate", type=_fraction, default=0.0, help="fraction of requests answered 500/503"
    )
    faults.add_argument(
        "--slow-rate", type=_fraction, default=0.0, help="fraction of requests delayed by --slow-s"
    )
    faults.add_argument(
        "--slow-s", type=_seconds, default=0.0, help="delay of a slow request, in seconds"
    )
    faults.add_argument(
        "--item-3004-rate",
        type=_fraction,
        default=0.0,
        help="fraction of items answered with per-item status 3004",
    )
    faults.add_argument(
        "--drop-rate",
        type=_fraction,
        default=0.0,
        help="fraction of requests whose connection is closed without an answer",
    )
    faults.add_argument(
        "--conflict-rate",
        type=_fraction,
        default=0.0,
        help="fraction of items answered twice under one ContentId, the opposite verdict "
        "first (a clean before a match, a made-up match before a clean)",
    )
    faults.add_argument(
        "--force-status",
        type=int,
        default=None,
        metavar="STATUS",
        help="answer every request with this HTTP status (400-599) until cleared at runtime",
    )
    faults.add_argument(
        "--throttle-next",
        type=int,
        default=0,
        metavar="N",
        help="answer the next N requests 429 with Retry-After --throttle-retry-after",
    )
    faults.add_argument(
        "--throttle-retry-after",
        type=int,
        default=1,
        metavar="S",
        help="the Retry-After of --throttle-next's 429s, in seconds (default: 1)",
    )
    faults.add_argument(
        "--seed", type=int, default=0, help="seed of the fault generator (default: 0)"
    )


def _config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> SandboxConfig:
    known: set[str] = set()
    for path in args.known:
        try:
            with open(path, encoding="utf-8") as lines:
                known |= parse_known_lines(lines)
        except OSError as exc:
            parser.error(f"--known {path}: {exc.strerror or exc}")
        except ValueError as exc:
            parser.error(f"--known {path}: {exc}")
    key = args.key if args.key is not None else os.environ.get(KEY_ENV) or DEFAULT_KEY
    try:
        return SandboxConfig(
            key=key,
            rate=args.rate,
            hash_size=args.hash_size,
            known_sha256=known,
            fail_rate=args.fail_rate,
            slow_rate=args.slow_rate,
            slow_s=args.slow_s,
            item_3004_rate=args.item_3004_rate,
            drop_rate=args.drop_rate,
            conflict_rate=args.conflict_rate,
            force_status=args.force_status,
            throttle_next=args.throttle_next,
            throttle_retry_after_s=args.throttle_retry_after,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    """Run a sandbox until SIGTERM or SIGINT. Exit status 0, 1 if it cannot bind, 2 on usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = _config_from_args(parser, args)
    try:
        sandbox = Sandbox(config, args.host, args.port, verbose=args.verbose)
    except OSError as exc:
        print(f"sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    # signal.signal only works in the main thread; elsewhere the caller owns shutdown.
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        with sandbox:
            print(f"sandbox listening on {sandbox.url}", flush=True)
            stop.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
