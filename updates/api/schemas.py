"""In/Out schemas of the updates router: what the API promises (and the OpenAPI document shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import BaseModel, ConfigDict, Field, model_validator

# A row id: what the database can hold (a bigger number is a 422 naming the field, not a 500).
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


class Out(BaseModel):
    """Answers are built from dicts by selectors: plain pydantic models, without ninja's ORM
    attribute resolution (a measurable share of a list's time); rows still validate by attribute."""

    model_config = ConfigDict(from_attributes=True)


class ActorOut(Out):
    kind: str  # user | token | webhook | cli | system
    name: str
    label: str  # "user alice", "token alice/ci", "webhook evt-1", "cli root (update-module)", "system"


class ManifestRefOut(Out):
    id: int
    name: str
    sha256: str
    created_at: datetime


class GateOut(Out):
    before: str
    expires_at: datetime | None
    decision: str


class DeploymentSummaryOut(Out):
    id: int
    kind: str
    status: str
    reason: str
    manifest: str
    actor: ActorOut
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    gate: GateOut | None = None


class ComponentOut(Out):
    key: str
    component_type: str
    component_id: str
    interface: str
    interface_args: list[str]
    provides: dict[str, str]
    version: str
    last_seen: datetime | None


class SystemVersionOut(Out):
    """Which declared working state (constraints.yaml `end_states`) the components form."""

    state: Literal["working", "outside", "undeclared", "invalid", "unknown"]
    message: str
    system_version: str | None
    row: str | None
    line: int | None
    constraints_file: str | None
    versions: dict[str, str]


class DriftOut(Out):
    component: str
    expected: str
    actual: str
    since: datetime | None


class SystemOut(Out):
    system_type: str
    topology: dict[str, Any] | None
    components: list[ComponentOut]
    active_manifest: ManifestRefOut | None
    previous_manifest: ManifestRefOut | None
    in_progress: DeploymentSummaryOut | None
    system_version: SystemVersionOut
    drift: list[DriftOut] = []


class AcceptedOut(Out):
    detail: str


class CheckOut(Out):
    check: str
    ok: bool
    detail: str


class BundleArtifactOut(Out):
    member: str
    name: str
    sha256: str
    size: int
    device_types: list[str]
    signed: bool
    signer_fingerprint: str
    component_types: list[str]


class BundleOut(Out):
    id: int
    status: str
    form: str
    filename: str
    sha256: str
    size: int
    manifest: str
    manifest_member: str
    actor: ActorOut
    created_at: datetime
    deleted_at: datetime | None
    deleted_by: str  # the label of who deleted it ("" while not deleted)
    checks: list[CheckOut]
    problems: list[str]
    artifacts: list[BundleArtifactOut]


class Page(Out):
    page: int
    page_size: int
    total: int


class BundlePageOut(Page):
    items: list[BundleOut]


class PlanIn(Schema):
    """Exactly one of `bundle_id` (an accepted bundle) or `manifest` (YAML text)."""

    bundle_id: Id | None = None
    manifest: str | None = Field(default=None, max_length=1_000_000)

    @model_validator(mode="after")
    def _one_source(self) -> PlanIn:
        if (self.bundle_id is None) == (self.manifest is None):
            raise ValueError("give exactly one of bundle_id or manifest")
        return self


class PlanComponentOut(Out):
    key: str
    component_type: str
    component_id: str
    interface: str
    order: int
    action: str
    current: str
    target: str
    artifact: str
    interface_args: list[str]
    spec_id: str | None
    provides: dict[str, str]
    reboot: str | None = None
    rollback: str | None = None


class PlanOut(Out):
    """The structure `plan --json` prints."""

    manifest: str
    form: str
    groups: list[tuple[int, list[str]]]
    components: list[PlanComponentOut]


class DeploymentIn(Schema):
    """Exactly one of `bundle_id` or `previous: true` (go back to the previous manifest)."""

    bundle_id: Id | None = None
    previous: bool = False
    stop_before: list[Literal["ArtifactCommit", "ArtifactRollback", "Cleanup"]] = []
    # Run a plan that violates the declared constraints anyway; `reason` is then required and
    # recorded with who forced it.
    force: bool = False
    reason: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> DeploymentIn:
        if (self.bundle_id is None) == (not self.previous):
            raise ValueError("give exactly one of bundle_id or previous: true")
        return self


class ResumeIn(Schema):
    stop_before: list[Literal["ArtifactCommit", "ArtifactRollback", "Cleanup"]] = []


class DecisionIn(Schema):
    """`approve` / `reject` at an approval gate (docs/policy.md): why, recorded in the journal."""

    reason: str = Field(default="", max_length=2000)


class DeploymentPageOut(Page):
    items: list[DeploymentSummaryOut]


class StepOut(Out):
    id: int
    component: str
    state: str
    argv: list[str]
    started_at: datetime
    ended_at: datetime | None
    duration_seconds: float | None
    exit_code: int | None
    timed_out: bool
    answer: str
    error: str
    ok: bool
    output_tail: str


class DeploymentComponentOut(Out):
    key: str
    component_type: str
    component_id: str
    action: str
    current: str
    target: str
    steps: list[StepOut]


class GroupOut(Out):
    order: int | None
    components: list[DeploymentComponentOut]


class DeploymentOut(DeploymentSummaryOut):
    components_concerned: list[str]
    position: dict[str, Any]
    options: dict[str, Any]
    requests: list[dict[str, Any]]
    groups: list[GroupOut]


class StepLogOut(Out):
    id: int
    component: str
    state: str
    stdout: str
    stderr: str


class AuditComponentOut(Out):
    key: str
    action: str
    before: str
    target: str
    after: str


class AuditDeploymentOut(Out):
    """One deployment as the audit journal records it (`audit.reports.audit_report`)."""

    id: int
    created_at: str
    ended_at: str | None
    actor: dict[str, Any] | None
    actor_text: str
    kind: str | None
    manifest_from: dict[str, Any] | None
    manifest_to: dict[str, Any]
    bundle: dict[str, Any] | None  # id, sha256, filename, artifacts (sha256, signer), signers
    forced: dict[str, Any] | None  # by, reason
    components: list[AuditComponentOut]
    requests: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    outcome: dict[str, Any]  # status, reason
    entries: list[int]  # the first and last journal entry
