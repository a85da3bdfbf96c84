from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar, Self, cast

from django.db import models
from django.db.models import Q

from updates.actors import Actor
from updates.engine.planner import PlanJson
from updates.engine.text import safe_json, safe_text


class Manifest(models.Model):
    """An exact snapshot of a manifest (and the topology it was applied with)."""

    name = models.CharField(max_length=300, db_index=True)  # the history's `manifest` filter
    form = models.CharField(max_length=10)  # "seed" | "current"
    sha256 = models.CharField(max_length=64)
    raw = models.TextField()
    source_path = models.CharField(max_length=1000)
    topology = models.JSONField(default=dict)  # the normalised topology it was applied with
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ActiveManifests(models.Model):
    """Singleton row: what the system runs now, and the last known good before it."""

    active = models.ForeignKey(Manifest, null=True, on_delete=models.PROTECT, related_name="+")
    previous = models.ForeignKey(Manifest, null=True, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)


class DeploymentStatus(models.TextChoices):
    QUEUED = "queued"  # created, waiting for a runner (CLI at once, or a worker)
    RUNNING = "running"
    STOPPED = "stopped"  # --stop-before: waits for `resume` or `rollback`
    REBOOT_REQUIRED = "reboot_required"  # --exit-on-reboot: waits for `resume` after the reboot
    WAITING_APPROVAL = "waiting_approval"  # at a gate of policy.yaml: waits for approve or reject
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    INCONSISTENT = "inconsistent"
    REJECTED = "rejected"  # refused before anything was touched


_IN_PROGRESS = (
    DeploymentStatus.QUEUED,
    DeploymentStatus.RUNNING,
    DeploymentStatus.STOPPED,
    DeploymentStatus.REBOOT_REQUIRED,
    DeploymentStatus.WAITING_APPROVAL,
)
_TERMINAL = (
    DeploymentStatus.SUCCEEDED,
    DeploymentStatus.ROLLED_BACK,
    DeploymentStatus.INCONSISTENT,
    DeploymentStatus.REJECTED,
)


class Deployment(models.Model):
    Status = DeploymentStatus
    IN_PROGRESS = _IN_PROGRESS
    # A process runs it (its owner): running, or waiting at a gate for a person's decision.
    RUNNABLE = (DeploymentStatus.RUNNING, DeploymentStatus.WAITING_APPROVAL)
    TERMINAL = _TERMINAL
    # How a run of the engine's state machine ends (`machine.Outcome`), as a status.
    OUTCOME_STATUS: ClassVar[dict[str, DeploymentStatus]] = {
        "succeeded": Status.SUCCEEDED,
        "rolled_back": Status.ROLLED_BACK,
        "inconsistent": Status.INCONSISTENT,
        "stopped": Status.STOPPED,
        "reboot_required": Status.REBOOT_REQUIRED,
    }

    manifest = models.ForeignKey(Manifest, on_delete=models.PROTECT, related_name="deployments")
    kind = models.CharField(max_length=20, default="install")  # install | previous
    status = models.CharField(
        max_length=20, choices=DeploymentStatus.choices, default=DeploymentStatus.QUEUED
    )
    reason = models.TextField(blank=True)
    components = models.JSONField(default=list)  # the components the reason concerns
    plan = models.JSONField(default=dict)  # engine Plan.to_json(); read it through `planned()`
    position = models.JSONField(default=dict)  # engine RunState, written before every state
    # The run's own options: a resume after a crash keeps the stops the operator asked for.
    stop_before = models.JSONField(default=list)
    exit_on_reboot = models.BooleanField(default=False)
    work_dir = models.CharField(max_length=1000, blank=True)
    # 1 while in progress, NULL after: the unique constraint lets the database itself refuse a
    # second deployment in progress, on SQLite and PostgreSQL alike.
    slot = models.PositiveSmallIntegerField(null=True, unique=True, default=1)
    owner = models.CharField(max_length=200, blank=True)  # claims.owner_token() of the runner
    # Run past the declared constraints (`install --force --reason`): why; empty for a deployment
    # that was not forced. Force is an option of the request that creates the deployment, so who
    # forced it is `actor`.
    forced_reason = models.TextField(blank=True)
    # The constraints.yaml the run was started with ({"path", "raw"}); None when none applied or
    # they came from the manifest's own `constraints:` section (kept with the manifest snapshot).
    constraints_file = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Who asked for it: `Actor.as_json()` (read it through `who`); the only record of "who".
    actor = models.JSONField()
    # Later requests on it (resume, rollback): [{"action", "actor": Actor.as_json(), "at"}].
    requests = models.JSONField(default=list)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    # Stored when it ends (`deployment_close`): per component, the first update state that failed
    # ({} when none did), so a finished deployment's outcome is read without its steps. None: in
    # progress (read from the steps then).
    failed_in = models.JSONField(null=True, blank=True)
    # The accepted bundle the manifest came from (install by bundle id, bundle file or webhook);
    # NULL for a manifest installed from a file outside any bundle. PROTECT, not SET_NULL: a
    # bundle's row is never deleted (deleting a bundle marks it `deleted` and keeps it for the
    # audit), so a hard delete that would strip deployments of their provenance must fail.
    bundle = models.ForeignKey(
        "Bundle", null=True, blank=True, on_delete=models.PROTECT, related_name="deployments"
    )
    # The hash of the journal entry that recorded the row's current status (docs/audit.md,
    # "Rows tied to the chain"): `audit verify` checks the row against that entry.
    seal = models.CharField(max_length=64, blank=True)
    # docs/policy.md: the policy the run started with (`Policy.to_json()`; None without one), the
    # gate it waits at and when that wait expires, and the decision once a person made it
    # ("approved" | "rejected", who as `Actor.as_json()`, why); cleared when the run goes on.
    policy = models.JSONField(null=True, blank=True)
    gate = models.CharField(max_length=40, blank=True)
    gate_expires_at = models.DateTimeField(null=True, blank=True)
    gate_decision = models.CharField(max_length=20, blank=True)
    gate_decided_by = models.JSONField(null=True, blank=True)
    gate_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        # One per filter of the history (API `GET /deployments`, the History page), so a page
        # costs the same at 100 000 deployments as at 10: status (newest first within it), the
        # period, and the per-week chart's range on `created_at` (with the status: the chart
        # counts from the index alone, and SQLite then prefers it to scanning by status).
        indexes = [
            models.Index(fields=["status", "-id"], name="deployment_status_newest"),
            models.Index(fields=["created_at", "status"], name="deployment_created_status"),
            # The ids alone, newest first: `?page=N` skips rows in this narrow index instead of
            # walking the table's rows (SQLite keys the table by id, but its pages hold the plan
            # and position JSON: page 450 of 10 000 deployments took 11 ms, now 0.1 ms).
            models.Index(fields=["-id"], name="deployment_newest"),
        ]
        constraints = [
            # The slot is held exactly while in progress: a close that forgot it would block
            # every later deployment, a resume of a finished one would take a second slot.
            # `slot__isnull=False` first: `NULL = 1` is unknown, and a CHECK lets unknown pass.
            models.CheckConstraint(
                condition=Q(slot__isnull=False, slot=1, status__in=[s.value for s in _IN_PROGRESS])
                | Q(slot__isnull=True, status__in=[s.value for s in _TERMINAL]),
                name="deployment_slot_only_in_progress",
            ),
        ]

    def __str__(self) -> str:
        return f"deployment {self.pk} ({self.status})"

    def planned(self) -> PlanJson | None:
        """The stored plan (written by the engine's `Plan.to_json`); None before selection ran."""
        return cast(PlanJson, self.plan) if self.plan else None

    @property
    def forced(self) -> bool:
        return bool(self.forced_reason)

    @property
    def who(self) -> Actor:
        return Actor.from_json(self.actor)

    @property
    def started_from_command_line(self) -> bool:
        """The CLI runs what it creates in its own process: no worker message will come for it."""
        return self.who.from_command_line


class DeploymentCount(models.Model):
    """How many deployments have each status: the history's `total` without counting rows.

    Kept by the database itself, in the statement that writes the deployment (triggers on
    `updates_deployment`, migration 0016: insert, delete, and an update that changes `status`),
    so no code path (a bulk insert, a conditional UPDATE, recovery) can leave it behind. A
    migration that makes SQLite copy the deployment table (most AlterField there) drops them:
    it must run `0016_deployment_counts.create_triggers` again (tests/test_deployment_rows.py
    fails without them)."""

    status = models.CharField(max_length=20, primary_key=True)
    n = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.n} {self.status}"


class Step(models.Model):
    """One interface call (state or query), written before it starts and completed after."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="steps")
    component = models.CharField(max_length=300)
    state = models.CharField(max_length=60)
    argv = models.JSONField(default=list)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True)
    exit_code = models.IntegerField(null=True)
    timed_out = models.BooleanField(default=False)
    answer = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    stdout = models.TextField(blank=True)
    stderr = models.TextField(blank=True)
    seal = models.CharField(max_length=64, blank=True)  # hash of its `step.finished` entry

    class Meta:
        ordering = ["id"]

    @property
    def ok(self) -> bool:
        return self.ended_at is not None and not self.error and self.exit_code in (0, None)


class StoredArtifact(models.Model):
    """An artifact in the content-addressed store (`<store>/<sha256>`), verified when it came in.

    A row exists only for artifacts of accepted bundles and of completed server downloads: bytes
    of a rejected bundle never get one, so nothing of it is deployable.
    """

    class Origin(models.TextChoices):
        BUNDLE = "bundle"
        SERVER = "server"

    sha256 = models.CharField(max_length=64, unique=True)
    size = models.BigIntegerField()
    name = models.CharField(max_length=300, db_index=True)  # artifact_name
    device_types = models.JSONField(default=list)
    payload_type = models.CharField(max_length=200, blank=True)
    provides = models.JSONField(default=dict)
    depends = models.JSONField(default=dict)
    signed = models.BooleanField(default=False)
    signer_fingerprint = models.CharField(max_length=64, blank=True)  # sha256 of the key's DER
    origin = models.CharField(max_length=10, choices=Origin.choices)
    server_id = models.CharField(max_length=200, blank=True)
    # An artifact that came as a delta (docs/bytes.md): the store file `sha256` is the delta,
    # rebuilt at Download against the stored base `base_sha256` into the artifact `full_sha256`.
    base_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    full_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True)  # stored, named by a bundle, or planned

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:12]})"


class Bundle(models.Model):
    """One ingested upload (tar/tar.gz, manifest artifact or lone manifest) and its check results."""

    class Status(models.TextChoices):
        INGESTING = "ingesting"
        ACCEPTED = "accepted"
        REJECTED = "rejected"  # kept as a record with its reasons; nothing of it is deployable
        DELETED = "deleted"  # deleted by a user: its files are gone, the record stays for the audit

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.INGESTING)
    form = models.CharField(max_length=20, blank=True)  # tar | tar.gz | manifest-artifact | manifest
    filename = models.CharField(max_length=1000, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)  # of the upload as received
    size = models.BigIntegerField(default=0)
    manifest_name = models.CharField(max_length=300, blank=True)
    manifest_member = models.CharField(max_length=1000, blank=True)
    manifest_raw = models.TextField(blank=True)
    topology_raw = models.TextField(blank=True)
    checks = models.JSONField(default=list)  # [{"check", "ok", "detail"}] in the order they ran
    problems = models.JSONField(default=list)
    directory = models.CharField(max_length=1000, blank=True)  # <datastore>/bundles/<id>, if accepted
    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.JSONField()  # who uploaded it: `Actor.as_json()` (read it through `who`)
    deleted_at = models.DateTimeField(null=True)  # DELETE /bundles/{id}: files gone, record kept
    deleted_by = models.JSONField(null=True)  # who deleted it: `Actor.as_json()`

    @classmethod
    def from_db(
        cls, db: str | None, field_names: Collection[str], values: Collection[Any], **kwargs: Any
    ) -> Self:
        # A row written before names were made safe where they enter (issue 22) may hold lone
        # surrogates, which no page can encode: every read gets them escaped (engine/text.py).
        bundle = super().from_db(db, field_names, values, **kwargs)
        loaded = bundle.__dict__
        if "filename" in loaded:
            bundle.filename = safe_text(bundle.filename)
        if "problems" in loaded:
            bundle.problems = safe_json(bundle.problems)
        if "checks" in loaded:
            bundle.checks = safe_json(bundle.checks)
        return bundle

    @property
    def who(self) -> Actor:
        return Actor.from_json(self.actor)

    @property
    def deleted_by_actor(self) -> Actor | None:
        return Actor.from_json(self.deleted_by) if self.deleted_by else None

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"bundle {self.pk} ({self.status})"


class BundleArtifact(models.Model):
    """An artifact an accepted bundle carries (`member`) or resolved by name ("")."""

    bundle = models.ForeignKey(Bundle, on_delete=models.CASCADE, related_name="artifacts")
    artifact = models.ForeignKey(StoredArtifact, on_delete=models.CASCADE, related_name="bundles")
    member = models.CharField(max_length=1000, blank=True)
    component_types = models.JSONField(default=list)

    class Meta:
        ordering = ["id"]


class StepEvent(models.Model):
    """One change of a step (started, finished), in the order it was committed: the id is the
    `id:` of the server-sent event, so a client reconnecting with `Last-Event-ID` gets every
    change after it and none twice. Written by the journal in the transaction of the change."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10)  # started | finished

    class Meta:
        ordering = ["id"]


class WebhookEvent(models.Model):
    """One signed event received on /api/v1/hooks/mender, and the answer it got.

    `event_id` is unique: a replay finds this row and gets `answer_status`/`answer_body` again,
    starting nothing. What the event started (a deployment, a bundle) names it as its actor,
    `Actor("webhook", event_id)`, which is how the audit shows a webhook as the actor.
    """

    class Action(models.TextChoices):
        PROCESSING = "processing"  # claimed; the answer is not written yet
        RECORDED = "recorded"  # about another device, or refresh is not configured
        REFRESH = "refresh"  # about this system's own device: a components refresh was queued
        DEPLOYMENT = "deployment"  # a deployment was queued
        FETCH = "fetch"  # a bundle URL to fetch was queued for a worker (`fetch_status` follows it)
        REFUSED = "refused"  # outside the replay window, or the request could not be carried out

    class Fetch(models.TextChoices):
        NONE = ""  # no URL to fetch
        QUEUED = "queued"  # answered 202; a worker's message is sent once this row commits
        RUNNING = "running"  # claimed by a worker (a conditional UPDATE from queued)
        DONE = "done"  # fetched, accepted, and its deployment queued (`bundle`, `deployment`)
        FAILED = "failed"  # `fetch_error` says why, never with what the URL served

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=40)
    event_time = models.DateTimeField()  # Mender's `time`
    data = models.JSONField(default=dict)
    device_id = models.CharField(max_length=200, blank=True)
    own_device = models.BooleanField(default=False)
    remote_addr = models.CharField(max_length=100, blank=True)
    body_sha256 = models.CharField(max_length=64)
    action = models.CharField(max_length=20, choices=Action.choices, default=Action.PROCESSING)
    answer_status = models.PositiveSmallIntegerField(null=True)
    # Text, not JSON: PostgreSQL's jsonb reorders keys, and a replay gets the very same bytes.
    answer_body = models.TextField(blank=True)
    bundle = models.ForeignKey(Bundle, null=True, on_delete=models.SET_NULL, related_name="+")
    deployment = models.ForeignKey(Deployment, null=True, on_delete=models.SET_NULL, related_name="+")
    replays = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    # The job of a deployment request by URL: the hook answers 202 at once, a worker fetches.
    fetch_status = models.CharField(max_length=10, choices=Fetch.choices, default=Fetch.NONE, blank=True)
    fetch_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"webhook {self.event_id} ({self.type}, {self.action})"


class JournalEntry(models.Model):
    """One entry of the append-only audit journal (docs/audit.md).

    `hash` is the SHA-256 of the entry's canonical serialisation, which includes `prev_hash` (the
    previous entry's `hash`): editing, deleting or reordering a row breaks the chain from there.
    Written only by `audit.services.journal_append`, never updated or deleted.
    """

    seq = models.BigIntegerField(primary_key=True)  # 1, 2, 3, … without gaps: the entry's number
    # Unique: two writers that read the same head cannot both append after it (no fork).
    prev_hash = models.CharField(max_length=64, unique=True)
    hash = models.CharField(max_length=64, db_index=True)  # rows' `seal` name their entry by it
    at = models.DateTimeField()
    kind = models.CharField(max_length=60)
    actor = models.JSONField(null=True)  # {"kind": user|token|webhook|cli|system, "name", …}
    subject = models.CharField(max_length=200, blank=True, db_index=True)  # "deployment:12"
    data = models.JSONField(default=dict)

    class Meta:
        db_table = "journal"
        ordering = ["seq"]
        # The audit report finds the deployments of a period by their `deployment.created` entry.
        indexes = [models.Index(fields=["kind", "at"], name="journal_kind_at")]

    def __str__(self) -> str:
        return f"journal entry {self.seq} ({self.kind})"


class JournalHead(models.Model):
    """Singleton row (pk=1): the last entry's number and hash.

    Appenders lock this row (SELECT … FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transactions
    hold the database write lock), so appends are serialised. It also lets `audit verify` notice a
    truncated tail, which leaves an otherwise intact chain behind.
    """

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    # Signed at every append (audit.chain.head_message): a head rewound or a tail rewritten by
    # someone without the key no longer matches its signature.
    at = models.CharField(max_length=40, blank=True)  # the last entry's time, as signed
    key_fingerprint = models.CharField(max_length=64, blank=True)
    signature = models.CharField(max_length=128, blank=True)

    class Meta:
        db_table = "journal_head"


class JournalAnchor(models.Model):
    """The appliance's Ed25519 signature over the chain head at entry `seq` (docs/audit.md)."""

    seq = models.BigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    at = models.DateTimeField()
    key_fingerprint = models.CharField(max_length=64)  # sha256 of the public key's DER
    signature = models.CharField(max_length=128)  # hex of the 64-byte Ed25519 signature

    class Meta:
        db_table = "journal_anchor"
        ordering = ["seq"]
