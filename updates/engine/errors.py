"""The domain errors and the one exit-code table (docs/cli.md §8).

Every error a user can meet derives from `OrchestratorError` and carries a stable `code` (the
REST error envelope's `error.code`), the CLI exit code, and the HTTP status an API answers with.
The CLI and the HTTP layer read these attributes instead of keeping tables of their own.
Pure Python: the engine raises most of these, and the engine never imports Django.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar


class ExitCode(IntEnum):
    """docs/cli.md §8: what `install`/`resume`/`rollback` (and the other commands) exit with."""

    DONE = 0
    FAILED = 1  # the update failed: rolled back, or reported inconsistent
    INVALID = 2  # invalid input, or nothing to resume/roll back: nothing was touched
    BUSY = 3  # another deployment is in progress: nothing was touched
    REBOOT_REQUIRED = 4  # success so far, the host must reboot (--exit-on-reboot)


# How a run of the state machine ends (`machine.Outcome`), as an exit code. A stop inside a *failed* deployment is
# mapped by the CLI (see `outcome_exit_code`), because it depends on the command that ran.
OUTCOME_EXIT: dict[str, ExitCode] = {
    "succeeded": ExitCode.DONE,
    "stopped": ExitCode.DONE,
    "reboot_required": ExitCode.REBOOT_REQUIRED,
    "rolled_back": ExitCode.FAILED,
    "inconsistent": ExitCode.FAILED,
}


def outcome_exit_code(outcome: str, *, failed: bool = False, rolling_back: bool = False) -> ExitCode:
    """The exit code for a deployment that ended (or paused) with `outcome`.

    A stop (--stop-before) inside a failed deployment is a failure for install/resume: Mender's
    update module reads 0 as "this state succeeded" and would clean up instead of calling
    ArtifactRollback. For `rollback` the stop after rolling back is that command's success."""
    if outcome == "stopped" and failed and not rolling_back:
        return ExitCode.FAILED
    return OUTCOME_EXIT.get(outcome, ExitCode.FAILED)


def error_envelope(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The API's one error envelope (docs/api.md); the webhook answers it records use it too."""
    return {"error": {"code": code, "message": message, "details": details}}


class OrchestratorError(Exception):
    """Base of every domain error; `str()` is the message a user reads."""

    code: ClassVar[str] = "error"
    exit_code: ClassVar[ExitCode] = ExitCode.FAILED
    http_status: ClassVar[int] = 500


class Refused(OrchestratorError):
    """A request refused with machine-readable `details` (which field, which problems) for the
    envelope's `details`; the subclasses say which refusal."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


class Unauthorized(Refused):
    """The caller could not be authenticated (a webhook's signature is missing or wrong)."""

    code = "unauthorized"
    exit_code = ExitCode.INVALID
    http_status = 401


class BodyTooLarge(Refused):
    """A request body over its limit, refused before it is read."""

    code = "body_too_large"
    exit_code = ExitCode.INVALID
    http_status = 413


class InvalidInput(OrchestratorError):
    """The input (manifest, topology, bundle, artifact, option) is not acceptable; nothing was
    touched."""

    code = "invalid_input"
    exit_code = ExitCode.INVALID
    http_status = 422


class NotFound(OrchestratorError):
    """What was named (a bundle, a deployment) does not exist or cannot be used."""

    code = "not_found"
    exit_code = ExitCode.INVALID
    http_status = 404


class NothingInProgress(OrchestratorError):
    """`resume`/`rollback` (or "install the previous manifest") with nothing to act on."""

    code = "nothing_in_progress"
    exit_code = ExitCode.INVALID
    http_status = 409


class NotWaiting(OrchestratorError):
    """`approve`/`reject` of a deployment that is not waiting at a gate, or already decided."""

    code = "not_waiting"
    exit_code = ExitCode.INVALID
    http_status = 409


class CleanupStarted(OrchestratorError):
    """`rollback` once cleanup has started: the update is final, only `resume` can finish it."""

    code = "cleanup_started"
    exit_code = ExitCode.INVALID
    http_status = 409


class BusyError(OrchestratorError):
    """Another deployment is in progress (or its runner is alive); nothing was touched."""

    code = "busy"
    exit_code = ExitCode.BUSY
    http_status = 409


class UnavailableError(OrchestratorError):
    """Something outside our input failed: an interface, an artifact server, the disk."""

    code = "unavailable"
    exit_code = ExitCode.FAILED
    http_status = 503
