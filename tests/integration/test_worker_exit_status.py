"""A worker that stops on an error exits with a failure status, so that a supervisor that
restarts on failure (systemd's ``Restart=on-failure``, deploy/systemd/) starts it again;
stopped by SIGTERM it exits 0 (tests/integration/test_worker_without_key.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devtools.devstack import free_port

pytestmark = pytest.mark.integration

#: ``edgematch worker``'s way into Celery (``run_celery``), with a Celery app of its own:
#: nothing listens at the broker's address and Celery is told not to wait for it, so the
#: worker stops at once with Celery's own failure status (1) — the status the command must
#: pass on. (Not a setting of edgematch's: the app is this test's, the path under test is
#: the command's.)
SCRIPT = """
import sys
from celery import Celery
from edgematch.tasks import run_celery
app = Celery(set_as_current=False)
app.conf.update(broker_url=sys.argv[1], broker_connection_retry_on_startup=False)
sys.exit(run_celery(app, ["worker", "--pool", "solo", "--without-gossip", "--without-mingle",
                       "--without-heartbeat", "--loglevel", "WARNING"]))
"""


def test_a_worker_celery_stops_on_an_error_exits_with_celerys_status() -> None:
    """Celery's exit status reaches the process (Celery.start and worker_main drop it)."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, url],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Shutting down" in done.stderr
