"""The runtime as the on-call tools use it: the process's clients, with quiet logs."""

from __future__ import annotations

from edgematch.infra import logs
from edgematch.runtime import Runtime, runtime


def tool_runtime() -> Runtime:
    """This process's runtime, with logs set up for a command-line tool: warnings and
    errors only (on stderr) unless ``EDGEMATCH_LOG_LEVEL=DEBUG``, the key never shown.

    Raises ConfigurationError (exit status 2) for a bad setting.
    """
    rt = runtime()
    level = "DEBUG" if rt.settings.log_level == "DEBUG" else "WARNING"
    logs.configure(level, rt.settings.log_format, process="cli")
    if rt.settings.subscription_key:
        logs.register_secret(rt.settings.subscription_key.reveal())
    return rt
