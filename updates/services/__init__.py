"""Writes (and the live system queries) of the updates app; `from updates import services`."""

from updates.engine.errors import BusyError, CleanupStarted, NothingInProgress
from updates.services.deployments import (
    NotQueued,
    deployment_cancel,
    deployment_close,
    deployment_create,
    deployment_create_previous,
    deployment_execute,
    deployment_install,
    deployment_install_previous,
    deployment_install_reconcile,
    deployment_resume,
    deployment_rollback,
)
from updates.services.environment import Environment, environment_load
from updates.services.system import (
    inventory_lines,
    plan_constraints_check,
    plan_preview,
    plan_suggest_order,
    provides_lines,
)

__all__ = [
    "BusyError",
    "CleanupStarted",
    "Environment",
    "NotQueued",
    "NothingInProgress",
    "deployment_cancel",
    "deployment_close",
    "deployment_create",
    "deployment_create_previous",
    "deployment_execute",
    "deployment_install",
    "deployment_install_previous",
    "deployment_install_reconcile",
    "deployment_resume",
    "deployment_rollback",
    "environment_load",
    "inventory_lines",
    "plan_constraints_check",
    "plan_preview",
    "plan_suggest_order",
    "provides_lines",
]
