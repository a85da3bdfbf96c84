"""Writes (and the live system queries) of the updates app; `from updates import services`."""

from updates.services.deployments import (
    deployment_create,
    deployment_create_previous,
    deployment_execute,
    deployment_install,
    deployment_install_previous,
    deployment_resume,
    deployment_rollback,
    plan_as_json,
)
from updates.services.environment import BusyError, Environment, NothingInProgress, environment_load
from updates.services.system import (
    inventory_lines,
    plan_constraints_check,
    plan_preview,
    plan_suggest_order,
    provides_lines,
)

__all__ = [
    "BusyError",
    "Environment",
    "NothingInProgress",
    "deployment_create",
    "deployment_create_previous",
    "deployment_execute",
    "deployment_install",
    "deployment_install_previous",
    "deployment_resume",
    "deployment_rollback",
    "environment_load",
    "inventory_lines",
    "plan_as_json",
    "plan_constraints_check",
    "plan_preview",
    "plan_suggest_order",
    "provides_lines",
]
