"""The drift watch (docs/policy.md): ask every component what it runs, one refresh at a time,
and let the worker do it every `drift.interval` of `policy.yaml`, counted from the last refresh
(stored on the system's row, so a restart neither skips nor repeats one).

A component is drifted when its answer differs from what it ran as the last deployment ended
(`devices`); `components_record` journals when that starts and ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from devices.models import System
from updates.actors import Actor
from updates.engine.errors import BusyError
from updates.engine.manifest import InputError
from updates.engine.policy import policy_file
from updates.models import Deployment
from updates.services.components import components_refresh
from updates.services.environment import Environment, environment_load
from updates.services.system import current_topology

log = logging.getLogger("orchestrator.drift")
LEASE = timedelta(hours=1)  # a refresh that died holding the lease gives it up after this


def system_refresh(*, actor: Actor, inventory: bool = False) -> int:
    """Ask every component now and store the answers (drift journaled for `actor`); the number
    of components asked. Raises BusyError while a deployment is in progress (its components run
    versions not committed yet) or another refresh runs; SelectionError if one cannot answer."""
    if Deployment.objects.filter(slot=1).exists():
        raise BusyError("a deployment is in progress: its components are not refreshed until it ends")
    env = environment_load()
    with _lease():
        return len(components_refresh(env, topology=current_topology(env), inventory=inventory, actor=actor))


@contextmanager
def _lease() -> Iterator[None]:
    """One refresh at a time, across processes and hosts: a conditional UPDATE on the system row."""
    now = timezone.now()
    System.objects.get_or_create(pk=1)
    free = Q(refresh_lease_until__isnull=True) | Q(refresh_lease_until__lt=now)
    if System.objects.filter(free, pk=1).update(refresh_lease_until=now + LEASE) != 1:
        raise BusyError("another refresh of the components is running: wait for it")
    try:
        yield
    finally:
        System.objects.filter(pk=1).update(refresh_lease_until=None)


def drift_refresh_due(env: Environment | None = None) -> bool:
    """Whether the policy's `drift.interval` has passed since the last refresh; claims it (one
    worker of several does) by moving the system's `refreshed_at` to now. No policy: never."""
    env = env or environment_load()
    try:
        policy = policy_file(env.topology_dir, data_dir=env.data_dir)
    except InputError as exc:
        log.warning("policy.yaml has problems, the drift watch waits for them to be fixed: %s", exc)
        return False
    if policy is None or policy.drift_interval is None:
        return False
    now = timezone.now()
    System.objects.get_or_create(pk=1)
    due = Q(refreshed_at__isnull=True) | Q(refreshed_at__lte=now - timedelta(seconds=policy.drift_interval))
    return System.objects.filter(due, pk=1).update(refreshed_at=now) == 1
