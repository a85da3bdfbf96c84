"""docs/policy.md, drift: the worker's watch is due once per `drift.interval`, counted from the
refresh time stored on the system's row (so a restarted worker neither skips nor repeats one),
and only one refresh runs at a time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from devices.models import System
from updates.engine.errors import BusyError
from updates.services.drift import _lease, drift_refresh_due


@pytest.fixture
def topology_dir(tmp_path: Path, settings: Any) -> Path:
    settings.TOPOLOGY_DIR = tmp_path
    settings.DATA_DIR = tmp_path
    return tmp_path


@pytest.mark.django_db
def test_the_watch_is_due_once_per_interval_from_the_stored_refresh_time(topology_dir: Path) -> None:
    assert not drift_refresh_due()  # no policy.yaml: no watch
    (topology_dir / "policy.yaml").write_text("drift:\n  interval: 15m\n")
    assert drift_refresh_due()  # never refreshed
    assert not drift_refresh_due()  # claimed: a second worker (or a restarted one) sends no other
    System.objects.filter(pk=1).update(refreshed_at=timezone.now() - timedelta(minutes=14))
    assert not drift_refresh_due()
    System.objects.filter(pk=1).update(refreshed_at=timezone.now() - timedelta(minutes=16))
    assert drift_refresh_due()
    (topology_dir / "policy.yaml").write_text("drift:\n  interval: often\n")
    System.objects.filter(pk=1).update(refreshed_at=None)
    assert not drift_refresh_due()  # a policy with problems: the watch waits for the fix


@pytest.mark.django_db
def test_one_refresh_at_a_time() -> None:
    with _lease(), pytest.raises(BusyError, match="another refresh"), _lease():
        pass
    with _lease():  # given back at the end
        pass
    System.objects.filter(pk=1).update(refresh_lease_until=timezone.now() - timedelta(seconds=1))
    with _lease():  # a lease its dead holder never gave back expires
        pass
