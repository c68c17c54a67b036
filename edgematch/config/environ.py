"""Reading declared variables from the environment, each once, naming it in every error.

A blank value (unset, empty or whitespace only) means the default. A malformed one raises
:class:`~edgematch.errors.ConfigurationError` whose message starts with the
variable's name. A secret comes from its variable or from the file its ``_FILE`` variant
names, never both.

An ``EDGEMATCH_*`` variable that names nothing edgematch reads is most likely a typo (a
setting the operator believes in but that does nothing): it is logged as a warning, once
a process, and start-up goes on, as it always has.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from edgematch.config.declare import FILE_SUFFIX, PREFIX, Variable
from edgematch.config.secret import Secret
from edgematch.errors import ConfigurationError

# The stdlib logger, not structlog: settings are read before logging is configured (the
# format is a setting), and structlog unconfigured writes to stdout, which `edgematch
# config` keeps for its JSON. Unconfigured, stdlib logging writes warnings to stderr.
_log = logging.getLogger(__name__)
_reported: set[str] = set()
_reported_lock = threading.Lock()


def read(variables: Iterable[Variable], env: Mapping[str, str]) -> dict[str, object]:
    """Each field's value from ``env`` (its default when blank), keyed by field name."""
    values: dict[str, object] = {}
    for variable in variables:
        if variable.field is not None:
            values[variable.field] = _value(variable, env, values)
    return values


def _value(variable: Variable, env: Mapping[str, str], earlier: Mapping[str, object]) -> object:
    spec = variable.spec
    if spec.secret:
        return read_secret(env, variable.name)
    raw = env.get(variable.name)
    if raw is None or raw.strip() == "":
        return earlier[spec.same_as] if spec.same_as else variable.default
    assert spec.parse is not None, f"{variable.name} is declared without a parser"
    try:
        return spec.parse(raw.strip())
    except ValueError as exc:
        raise ConfigurationError(f"{variable.name}: {exc}") from None


def read_secret(env: Mapping[str, str], name: str) -> Secret | None:
    """The secret in ``name``, or in the file ``name``_FILE names (read once, stripped)."""
    direct = env.get(name, "").strip()
    path = env.get(name + FILE_SUFFIX, "").strip()
    if direct and path:
        raise ConfigurationError(f"set {name} or {name}{FILE_SUFFIX}, not both")
    if path:
        return Secret(_secret_file(name + FILE_SUFFIX, path))
    return Secret(direct) if direct else None


def _secret_file(variable: str, path: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{variable}: {path} is not UTF-8 text") from None
    if not value:
        raise ConfigurationError(f"{variable}: {path} is empty")
    return value


def unknown_variables(env: Iterable[str], variables: Iterable[Variable]) -> list[str]:
    """The ``EDGEMATCH_*`` names in ``env`` that no declared variable answers to, sorted."""
    known = {name for variable in variables for name in variable.names}
    return sorted(name for name in env if name.startswith(PREFIX) and name not in known)


def warn_unknown(env: Iterable[str], variables: Iterable[Variable]) -> None:
    """Log each unknown ``EDGEMATCH_*`` variable once a process (never its value)."""
    declared = tuple(variables)
    known = [name for variable in declared for name in variable.names]
    for name in unknown_variables(env, declared):
        with _reported_lock:
            if name in _reported:
                continue
            _reported.add(name)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        _log.warning("%s is not an edgematch setting and is ignored%s", name, hint)
