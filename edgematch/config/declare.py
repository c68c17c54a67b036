"""Declaring a setting once: its variable, default, parser, unit and help on the field itself.

``setting(...)`` returns a :func:`dataclasses.field` whose metadata carries a :class:`Spec`;
the reader (:mod:`edgematch.config.environ`) and the reference in ``docs/configuration.md``
(:mod:`edgematch.config.docs`) are both generated from those specs, so a setting cannot be
read under one name and documented under another.

A field's variable is ``EDGEMATCH_`` + its name upper-cased, unless ``env=`` names another
one (kept for variables older than the field's name).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

if TYPE_CHECKING:
    from edgematch.config.secret import Secret

T = TypeVar("T")

PREFIX: Final = "EDGEMATCH_"
#: The suffix of the variable naming a file that holds a secret (read once at start-up).
FILE_SUFFIX: Final = "_FILE"
#: Seconds in an hour and in a day, for the defaults (and the reference's "(N days)").
HOUR_S: Final = 3600
DAY_S: Final = 24 * HOUR_S
_SPEC = "edgematch.setting"


class Concern(Enum):
    """The groups of the configuration reference, in the order it shows them."""

    API = "The PhotoDNA API"
    RATE = "Rate limit and batching"
    REDIS = "Redis and the broker"
    INTAKE = "Intake and ingest"
    WEBHOOK = "The webhook intake"
    RESULTS = "Results, tags and caches"
    DOWNSTREAM = "Quarantine and reports"
    RECOVERY = "Retries, dead letters and recovery"
    PROCESSES = "Processes, logs, metrics and health"
    INTERNAL = "Set by edgematch itself, and development tools"


@dataclass(frozen=True)
class Spec:
    """What the reader and the docs need to know about one variable besides its value."""

    concern: Concern
    #: One line of Markdown: what the variable means, for the reference table.
    help: str
    #: ``str -> value``, raising ValueError; None for secrets (read as :class:`Secret`).
    parse: Callable[[str], Any] | None = None
    #: The value's unit ("s", "ms", "requests/s", "bytes" …); empty when it has none.
    unit: str = ""
    #: The variable's name when it is not derived from the field's.
    env: str | None = None
    #: Read as a Secret, from the variable or from the file its ``_FILE`` variant names.
    secret: bool = False
    #: Another field whose value is this one's when the variable is unset.
    same_as: str | None = None
    #: The default as the docs state it, when the value alone would not say it right.
    default_doc: str | None = None


def setting(
    default: T,
    concern: Concern,
    parse: Callable[[str], T],
    *,
    help: str,
    unit: str = "",
    env: str | None = None,
    same_as: str | None = None,
    default_doc: str | None = None,
) -> T:
    """A Settings field read from its variable with ``parse`` (``default`` when unset or blank)."""
    spec = Spec(concern, help, parse, unit, env, False, same_as, default_doc)
    return dataclasses.field(default=default, metadata={_SPEC: spec})


def secret_setting(
    concern: Concern, *, help: str, default_doc: str | None = None, env: str | None = None
) -> Secret | None:
    """A Settings field holding a Secret or None, from ``VAR`` or the file ``VAR_FILE`` names.

    Kept out of the dataclass repr, so no traceback or log line that shows settings shows it.
    """
    spec = Spec(concern, help, None, "", env, True, None, default_doc)
    return cast(
        "Secret | None", dataclasses.field(default=None, repr=False, metadata={_SPEC: spec})
    )


@dataclass(frozen=True)
class Variable:
    """One environment variable as an operator meets it."""

    name: str
    spec: Spec
    #: The Settings field it fills; None for a variable another module reads itself.
    field: str | None = None
    default: object = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name it may be set under: a secret's ``_FILE`` variant too."""
        return (self.name, self.name + FILE_SUFFIX) if self.spec.secret else (self.name,)


def variable_name(field_name: str, spec: Spec) -> str:
    return spec.env or PREFIX + field_name.upper()


def declared(settings_class: type) -> tuple[Variable, ...]:
    """The variables of a dataclass's ``setting`` fields, in declaration order.

    Raises TypeError for a field declared without ``setting``/``secret_setting`` (every
    field must be readable and documented), or whose ``same_as`` names no earlier field
    (it is read first).
    """
    found: list[Variable] = []
    for f in dataclasses.fields(settings_class):
        where = f"{settings_class.__name__}.{f.name}"
        spec = f.metadata.get(_SPEC)
        if not isinstance(spec, Spec):
            raise TypeError(f"{where} is not declared with setting()")
        if spec.same_as and spec.same_as not in {v.field for v in found}:
            raise TypeError(f"{where}: same_as={spec.same_as!r} names no earlier field")
        found.append(Variable(variable_name(f.name, spec), spec, f.name, f.default))
    return tuple(found)


def elsewhere(
    name: str, concern: Concern, *, help: str, default_doc: str = "none", unit: str = ""
) -> Variable:
    """A variable read by another module itself, declared here to be documented and known."""
    return Variable(name, Spec(concern, help, None, unit, name, False, None, default_doc))
