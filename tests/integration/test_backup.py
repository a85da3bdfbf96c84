"""`backup`, `restore` and `migrate` through the real command line (docs/operations.md)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, DemoSystem
from tests.integration.upkeep import destroy, journal_verifies, ok, populate, snapshot, tree
from updates.liveness import owner_token

# The updates app's migrations in order: the tests step back one (or to before the seal) and
# forward again, whatever the newest is.
MIGRATIONS = sorted(p.stem for p in (ROOT / "updates" / "migrations").glob("0*.py"))
NEWEST, BEFORE_NEWEST = MIGRATIONS[-1], MIGRATIONS[-2]

Tamper = Callable[[tarfile.TarInfo, bytes], list[tuple[tarfile.TarInfo, bytes]]]


def _backup(demo: DemoSystem, path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(ok(demo.run("backup", "-o", str(path), "--json")))
    return result


def test_it_restores_history_active_manifest_and_journal_after_everything_is_destroyed(
    demo: DemoSystem,
) -> None:
    populate(demo)
    before = snapshot(demo)
    archive = demo.root / "appliance.tar.gz"
    made = _backup(demo, archive)
    assert made["path"] == str(archive)
    assert made["size"] == archive.stat().st_size
    assert oct(archive.stat().st_mode & 0o777) == "0o600"  # it holds the signing key and secrets
    assert {"manifests", "artifacts", "bundles", "audit", "secret_key"} <= set(made["included"])
    with tarfile.open(archive) as tar:
        links = [m for m in tar.getmembers() if m.islnk()]
        names = tar.getnames()
    assert links and all(m.name.startswith("datastore/bundles/") for m in links)
    assert not [n for n in names if n.split("/")[1:2] in (["queue"], ["workers"], ["uploads"], ["static"])]

    destroy(demo)
    restored = ok(demo.run("restore", str(archive), "--yes"))

    assert "2 deployments; active manifest: system-core-v3" in restored
    assert snapshot(demo) == before
    assert journal_verifies(demo)
    bundle_file = next((demo.datastore / "bundles").rglob("gateway-v3.mender"))
    artifact = [
        p for p in (demo.datastore / "artifacts").rglob("*") if p.is_file() and p.samefile(bundle_file)
    ]
    assert artifact, "the bundle's file is a hard link into the artifact store again"
    ok(demo.install("manifest-v2.yaml"))  # and the appliance works on: a third deployment


def test_it_says_a_deployment_was_in_progress_and_restores_it_resumable(demo: DemoSystem) -> None:
    ok(demo.install("manifest-v2.yaml", "--stop-before", "ArtifactCommit"))
    archive = demo.root / "paused.tar.gz"
    printed = ok(demo.run("backup", "-o", str(archive)))
    assert "deployment 1 was stopped" in printed
    with tarfile.open(archive) as tar:
        assert any(name.startswith("datastore/work/1/") for name in tar.getnames())

    destroy(demo)
    ok(demo.run("restore", str(archive), "--yes"))
    resumed = demo.run("resume")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(ok(demo.run("history", "--json")))[0]["status"] == "succeeded"


def _rewrite(source: Path, out: Path, tamper: Tamper) -> None:
    """Copy the archive member by member, letting `tamper` replace each one."""
    with tarfile.open(source) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            for info, content in tamper(member, data):
                dst.addfile(info, io.BytesIO(content) if info.isfile() else None)


def _extra(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> Tamper:
    """Adds one more member after backup.json's neighbour, the database."""

    def tamper(member: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        if not member.name.startswith("database/"):
            return [(member, data)]
        extra = tarfile.TarInfo(name)
        extra.type, extra.linkname, extra.size = kind, link, 0 if link else 1
        return [(member, data), (extra, b"x")]

    return tamper


def _flip_byte(member: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    if member.name.startswith("datastore/manifests/") and member.isfile():
        return [(member, bytes([data[0] ^ 1]) + data[1:])]
    return [(member, data)]


def _future_schema(member: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    if member.name != "backup.json":
        return [(member, data)]
    manifest = json.loads(data)
    manifest["migrations"]["updates"].append("9999_from_the_future")
    data = json.dumps(manifest).encode()
    member.size = len(data)
    return [(member, data)]


TAMPERED: dict[str, tuple[Tamper, str]] = {
    "dotdot": (_extra("datastore/../x"), "datastore/../x: path leaves the archive"),
    "parent": (_extra("../x"), "../x: path leaves the archive"),
    "absolute": (_extra("/tmp/orch-backup-abs"), "/tmp/orch-backup-abs: absolute"),
    "symlink": (_extra("datastore/manifests/evil", tarfile.SYMTYPE, "/etc/passwd"), "symlinks"),
    "hardlink": (_extra("datastore/evil", tarfile.LNKTYPE, "../../etc/passwd"), "hard link outside"),
    "sha": (_flip_byte, "sha256 mismatch"),
    "newer": (
        _future_schema,
        "newer schema: migrations this code does not have: updates.9999_from_the_future",
    ),
}


def test_it_refuses_unsafe_or_tampered_archives_and_changes_nothing(demo: DemoSystem) -> None:
    ok(demo.install("manifest-v2.yaml"))
    good = demo.root / "good.tar.gz"
    _backup(demo, good)
    ok(demo.install("manifest-v3.yaml"))  # the live state now differs from the backup
    before, history = tree(demo.datastore), ok(demo.run("history", "--json"))

    for label, (tamper, problem) in TAMPERED.items():
        bad = demo.root / f"{label}.tar.gz"
        _rewrite(good, bad, tamper)
        result = demo.run("restore", str(bad), "--yes")
        assert (result.returncode, label) == (2, label), result.stdout + result.stderr
        assert problem in result.stderr, (label, result.stderr)
        assert tree(demo.datastore) == before, label  # no scratch dir left, nothing replaced
        assert ok(demo.run("history", "--json")) == history, label
    assert not Path("/tmp/orch-backup-abs").exists()


def test_it_refuses_to_restore_without_yes_when_stdin_is_not_a_terminal(demo: DemoSystem) -> None:
    archive = demo.root / "a.tar.gz"
    _backup(demo, archive)
    result = demo.run("restore", str(archive))
    assert result.returncode == 2
    assert "pass --yes" in result.stderr


def test_it_refuses_to_restore_while_a_worker_is_live(demo: DemoSystem) -> None:
    ok(demo.install("manifest-v2.yaml"))
    archive = demo.root / "a.tar.gz"
    _backup(demo, archive)
    beat = {
        "name": "celery@gateway",
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "broker": "redis",
        "started_at": time.time(),
        "beat_at": time.time() + 60,  # stays fresh however slow the machine is
        "owner": owner_token(),  # this test process: alive
    }
    (demo.datastore / "workers").mkdir()
    (demo.datastore / "workers" / "celery@gateway.json").write_text(json.dumps(beat))
    before = tree(demo.datastore)

    result = demo.run("restore", str(archive), "--yes")

    assert result.returncode == 3
    assert "workers are live: celery@gateway" in result.stderr
    assert tree(demo.datastore) == before


def _manage(demo: DemoSystem, *args: str) -> str:
    command = [sys.executable, str(ROOT / "manage.py"), *args]
    return ok(subprocess.run(command, env=demo.env, capture_output=True, text=True, timeout=120))


def _backups(demo: DemoSystem, prefix: str) -> list[str]:
    return sorted(p.name for p in (demo.datastore / "backups").glob(f"{prefix}*.tar.gz"))


def test_it_backs_up_before_migrating_only_when_pending_and_keeps_the_newest_n(demo: DemoSystem) -> None:
    ok(demo.install("manifest-v2.yaml"))
    assert ok(demo.run("migrate")).strip() == "no migrations to apply"
    assert not (demo.datastore / "backups").exists()
    manual = demo.run("backup")
    ok(manual)
    demo.env["ORCH_BACKUP_KEEP"] = "2"

    taken = []
    for _ in range(3):
        _manage(demo, "migrate", "updates", BEFORE_NEWEST, "-v", "0")  # Django's: no backup
        out = ok(demo.run("migrate"))
        assert f"applied 1 migration: updates.{NEWEST}" in out
        taken.append(out.split("backup before migrating: ", 1)[1].split()[0])

    assert _backups(demo, "pre-migrate-") == sorted(Path(p).name for p in taken[1:])
    assert len(_backups(demo, "backup-")) == 1  # the manual one is never pruned
    with tarfile.open(taken[-1]) as tar:
        saved = json.loads(tar.extractfile("backup.json").read())  # type: ignore[union-attr]
    assert NEWEST not in saved["migrations"]["updates"]  # the schema before migrating

    restored = ok(demo.run("restore", taken[-1], "--yes"))  # an older schema: brought forward
    assert f"migrated forward: updates.{NEWEST}" in restored
    assert "1 deployments; active manifest: system-core-v2" in restored


def test_it_names_the_backup_and_the_restore_command_when_a_migration_fails(demo: DemoSystem) -> None:
    _manage(demo, "migrate", "updates", "0006_forced", "-v", "0")
    # A table in the way of 0007_journal: its CREATE TABLE fails.
    sql = "from django.db import connection; connection.cursor().execute('CREATE TABLE journal (x integer)')"
    _manage(demo, "shell", "-c", sql)

    result = demo.run("migrate")

    assert result.returncode == 1, result.stdout + result.stderr
    (backup,) = _backups(demo, "pre-migrate-")
    path = demo.datastore / "backups" / backup
    assert f"go back with: orchestrator restore {path} --yes" in result.stderr


@pytest.mark.parametrize("args", [["migrate", "updates", "0042"], ["migrate", "nosuchapp"]])
def test_it_refuses_an_unknown_migration_target(demo: DemoSystem, args: list[str]) -> None:
    result = demo.run(*args)
    assert result.returncode == 2, result.stdout + result.stderr


def test_it_refuses_to_restore_while_a_deployment_runs_with_a_live_owner(demo: DemoSystem) -> None:
    ok(demo.install("manifest-v2.yaml", "--stop-before", "ArtifactCommit"))
    archive = demo.root / "a.tar.gz"
    _backup(demo, archive)
    # The deployment's runner is this test process, alive: as if an `install` were running.
    claim = f"from updates.models import Deployment; Deployment.objects.update(status='running', owner='{owner_token()}')"
    _manage(demo, "shell", "-c", claim)

    result = demo.run("restore", str(archive), "--yes")

    assert result.returncode == 3, result.stdout + result.stderr
    assert f"deployment 1 is running (pid {os.getpid()})" in result.stderr


def test_it_backs_up_a_database_whose_tables_are_not_migrated_yet(demo: DemoSystem) -> None:
    _manage(demo, "migrate", "updates", "zero", "-v", "0")
    archive = demo.root / "early.tar.gz"
    made = _backup(demo, archive)
    assert "updates" not in made["migrations"]
    restored = ok(demo.run("restore", str(archive), "--yes"))
    assert "migrated forward: " in restored and "updates.0007_journal" in restored


WRITER = """
import sys, time
from pathlib import Path
from updates.actors import Actor
from updates.services.hook_secret import hook_secret_rotate
stop, started = Path(sys.argv[1]), Path(sys.argv[2])
count = 0
while not stop.exists():
    hook_secret_rotate(actor=Actor("cli", "writer"))  # one journal entry per call, each in its own transaction
    count += 1
    if count == 3:
        started.touch()
print(count)
"""


def test_it_takes_a_consistent_backup_while_the_journal_is_written(demo: DemoSystem) -> None:
    ok(demo.install("manifest-v2.yaml"))
    first = json.loads(ok(demo.run("audit", "verify", "--json")))["entries"]
    stop, started = demo.root / "stop", demo.root / "started"
    command = [
        sys.executable,
        str(ROOT / "manage.py"),
        "shell",
        "-c",
        f"import sys; sys.argv = ['', {str(stop)!r}, {str(started)!r}]\n{WRITER}",
    ]
    writer = subprocess.Popen(
        command, env=demo.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        while not started.exists():
            assert writer.poll() is None, writer.communicate()
            time.sleep(0.05)
        archive = demo.root / "busy.tar.gz"
        _backup(demo, archive)
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    written = int(out.split()[-1])

    destroy(demo)
    ok(demo.run("restore", str(archive), "--yes"))

    verdict = json.loads(ok(demo.run("audit", "verify", "--json")))
    assert verdict["ok"], verdict
    assert first + 3 <= verdict["entries"] <= first + written


def test_an_appliance_upgraded_to_the_signed_head_verifies(demo: DemoSystem) -> None:
    """A journal written before heads were signed (0009_seal): the upgrade journals itself, which
    signs the head, so `audit verify` holds right after `migrate` (docs/audit.md)."""
    ok(demo.install("manifest-v2.yaml"))
    _manage(demo, "migrate", "updates", "0008_deployment_bundle", "-v", "0")  # before the seal
    after_seal = len(MIGRATIONS) - MIGRATIONS.index("0008_deployment_bundle") - 1
    assert f"applied {after_seal} migrations" in ok(demo.run("migrate"))
    verdict = demo.run("audit", "verify")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
