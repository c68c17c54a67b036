"""Variables other modules read from the environment themselves, outside Settings.

Declared here so that the configuration reference documents them and reading Settings does
not report them as unknown: the heartbeat directory, which the liveness probe reads
without loading the settings; the process name ``edgematch beat`` hands its Celery
processes; the development tools' own. Any other setting belongs in Settings.
"""

from __future__ import annotations

from typing import Final

from edgematch.config.declare import Concern, elsewhere

READ_ELSEWHERE: Final = (
    elsewhere(
        "EDGEMATCH_HEARTBEAT_DIR",
        Concern.PROCESSES,
        default_doc="the temp dir",
        help="where each process's heartbeat file lives, for `edgematch health`",
    ),
    elsewhere(
        "EDGEMATCH_PROCESS",
        Concern.INTERNAL,
        default_doc="`worker`",
        help="the process name in log lines of Celery's processes; `edgematch beat` sets it",
    ),
    elsewhere(
        "EDGEMATCH_SANDBOX_KEY",
        Concern.INTERNAL,
        help="the subscription key the local PhotoDNA sandbox accepts (development only)",
    ),
    elsewhere(
        "EDGEMATCH_LEDGER_FILE",
        Concern.INTERNAL,
        help="where the chaos tests write their ledger (tests only)",
    ),
)
