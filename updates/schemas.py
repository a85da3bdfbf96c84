"""In/Out schemas of the updates router: what the API promises (and the OpenAPI document shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Schema
from pydantic import Field, model_validator


class ActorOut(Schema):
    kind: str
    name: str


class ManifestRefOut(Schema):
    id: int
    name: str
    sha256: str
    created_at: datetime


class DeploymentSummaryOut(Schema):
    id: int
    kind: str
    status: str
    reason: str
    manifest: str
    actor: ActorOut
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ComponentOut(Schema):
    key: str
    component_type: str
    component_id: str
    interface: str
    interface_args: list[str]
    provides: dict[str, str]
    version: str
    last_seen: datetime | None


class SystemOut(Schema):
    system_type: str
    topology: dict[str, Any] | None
    components: list[ComponentOut]
    active_manifest: ManifestRefOut | None
    previous_manifest: ManifestRefOut | None
    in_progress: DeploymentSummaryOut | None


class AcceptedOut(Schema):
    detail: str


class CheckOut(Schema):
    check: str
    ok: bool
    detail: str


class BundleArtifactOut(Schema):
    member: str
    name: str
    sha256: str
    size: int
    device_types: list[str]
    signed: bool
    signer_fingerprint: str
    component_types: list[str]


class BundleOut(Schema):
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
    deleted_by: str
    checks: list[CheckOut]
    problems: list[str]
    artifacts: list[BundleArtifactOut]


class Page(Schema):
    page: int
    page_size: int
    total: int


class BundlePageOut(Page):
    items: list[BundleOut]


class PlanIn(Schema):
    """Exactly one of `bundle_id` (an accepted bundle) or `manifest` (YAML text)."""

    bundle_id: int | None = None
    manifest: str | None = Field(default=None, max_length=1_000_000)

    @model_validator(mode="after")
    def _one_source(self) -> PlanIn:
        if (self.bundle_id is None) == (self.manifest is None):
            raise ValueError("give exactly one of bundle_id or manifest")
        return self


class PlanComponentOut(Schema):
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


class PlanOut(Schema):
    """The structure `plan --json` prints."""

    manifest: str
    form: str
    groups: list[tuple[int, list[str]]]
    components: list[PlanComponentOut]


class DeploymentIn(Schema):
    """Exactly one of `bundle_id` or `previous: true` (go back to the previous manifest)."""

    bundle_id: int | None = None
    previous: bool = False
    stop_before: list[Literal["ArtifactCommit", "ArtifactRollback", "Cleanup"]] = []

    @model_validator(mode="after")
    def _one_source(self) -> DeploymentIn:
        if (self.bundle_id is None) == (not self.previous):
            raise ValueError("give exactly one of bundle_id or previous: true")
        return self


class ResumeIn(Schema):
    stop_before: list[Literal["ArtifactCommit", "ArtifactRollback", "Cleanup"]] = []


class DeploymentPageOut(Page):
    items: list[DeploymentSummaryOut]


class StepOut(Schema):
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


class DeploymentComponentOut(Schema):
    key: str
    component_type: str
    component_id: str
    action: str
    current: str
    target: str
    steps: list[StepOut]


class GroupOut(Schema):
    order: int | None
    components: list[DeploymentComponentOut]


class DeploymentOut(DeploymentSummaryOut):
    components_concerned: list[str]
    position: dict[str, Any]
    options: dict[str, Any]
    requests: list[dict[str, Any]]
    groups: list[GroupOut]


class StepLogOut(Schema):
    id: int
    component: str
    state: str
    stdout: str
    stderr: str


class AuditBundleOut(Schema):
    id: int
    sha256: str
    signers: list[str]


class AuditRowOut(Schema):
    deployment: int
    actor_kind: str
    actor: str
    requests: list[dict[str, Any]]
    manifest_from: str | None
    manifest_to: str
    outcome: str
    reason: str
    started_at: datetime
    duration_seconds: float | None
    versions_before: dict[str, str]
    versions_after: dict[str, str]
    bundle: AuditBundleOut | None
