"""The audit journal (issue 11), driven through the real command line on the demo system.

Tampering is done directly in the database (SQLite file, or the demo's PostgreSQL database in the
PostgreSQL pass of .ci/run), as an attacker with database access would.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from audit import chain as auditchain
from tests.integration.conftest import ROOT, DemoSystem

PG = re.compile(r"^postgres")


@contextmanager
def database(demo: DemoSystem) -> Iterator[Any]:
    """A DB-API connection to the demo's own database, committed on exit."""
    url = demo.env.get("DATABASE_URL", "")
    if PG.match(url):
        import psycopg

        conn: Any = psycopg.connect(url)
    else:
        conn = sqlite3.connect(demo.datastore / "orchestrator.sqlite3")
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def sql(demo: DemoSystem, statement: str, *params: object) -> list[tuple[Any, ...]]:
    placeholder = "%s" if PG.match(demo.env.get("DATABASE_URL", "")) else "?"
    with database(demo) as conn:
        cur = conn.cursor()
        cur.execute(statement.replace("?", placeholder), params)
        return list(cur.fetchall()) if cur.description else []


def verify(demo: DemoSystem, *args: str) -> subprocess.CompletedProcess[str]:
    return demo.run("audit", "verify", *args)


def walk(demo: DemoSystem) -> None:
    """The demo walk's deployments: v2 succeeds; v3 fails R456's commit and is rolled back."""
    assert demo.install("manifest-v2.yaml").returncode == 0
    demo.fail("R456", "ArtifactCommit")
    assert demo.install("manifest-v3.yaml").returncode == 1


def head(demo: DemoSystem) -> int:
    return int(sql(demo, "SELECT seq FROM journal_head WHERE id = 1")[0][0])


def test_an_intact_journal_verifies_in_one_line(demo: DemoSystem) -> None:
    walk(demo)
    result = verify(demo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("\n") == 1
    assert result.stdout.startswith(f"journal intact: entries 1-{head(demo)} ")
    assert "signed anchors" in result.stdout


def _edit(demo: DemoSystem, seq: int) -> None:
    sql(demo, "UPDATE journal SET subject = 'deployment:99' WHERE seq = ?", seq)


def _delete(demo: DemoSystem, seq: int) -> None:
    sql(demo, "DELETE FROM journal WHERE seq = ?", seq)


def _reorder(demo: DemoSystem, seq: int) -> None:
    """Swap the positions of entries seq and seq + 2."""
    sql(demo, "UPDATE journal SET seq = -1 WHERE seq = ?", seq)
    sql(demo, "UPDATE journal SET seq = ? WHERE seq = ?", seq, seq + 2)
    sql(demo, "UPDATE journal SET seq = ? WHERE seq = -1", seq + 2)


def _truncate(demo: DemoSystem, seq: int) -> None:
    sql(demo, "DELETE FROM journal WHERE seq >= ?", seq)


@pytest.mark.parametrize(
    ("tamper", "pattern"),
    [
        (
            _edit,
            r"^journal BROKEN at entry {n} \(\S+, deployment.created deployment:99 .*\): its contents do not match",
        ),
        (_delete, r"^journal BROKEN at entry {n1} \(.*\): entry {n} missing before it"),
        (_reorder, r"^journal BROKEN at entry {n} \(.*\): its contents do not match"),
        (
            _truncate,
            r"^journal BROKEN at entry {n}: missing: the chain ends at entry {n_1} but .* entries {n}-{head} removed from the end",
        ),
    ],
    ids=["edit", "delete", "reorder", "truncate"],
)
def test_tampering_in_the_database_is_caught_and_named(demo: DemoSystem, tamper: Any, pattern: str) -> None:
    walk(demo)
    last = head(demo)
    # Entry n: the second deployment's first entry for the edit, a step further on otherwise.
    created = sql(demo, "SELECT seq FROM journal WHERE kind = 'deployment.created' ORDER BY seq")
    n = int(created[1][0]) if tamper is _edit else last - 5
    tamper(demo, n)
    result = verify(demo)
    assert result.returncode == 1, result.stdout
    expected = pattern.format(n=n, n1=n + 1, n_1=n - 1, head=last)
    assert re.match(expected, result.stdout), (expected, result.stdout)


def test_a_rewritten_chain_fails_against_the_signed_anchors(demo: DemoSystem, tmp_path: Path) -> None:
    walk(demo)
    published = tmp_path / "anchors.jsonl"
    export = tmp_path / "before.tar"
    assert demo.run("audit", "export", "-o", str(export)).returncode == 0
    published.write_bytes(auditchain.archive_read(export.read_bytes()).members["anchors.jsonl"])
    # The attacker edits entry 3 and recomputes every hash after it: internally consistent again.
    _rewrite_from(demo, 3)
    result = verify(demo)
    assert result.returncode == 1
    first_anchor = int(sql(demo, "SELECT MIN(seq) FROM journal_anchor")[0][0])
    assert re.match(
        rf"^journal BROKEN at entry {first_anchor} .*does not match the anchor signed at", result.stdout
    )
    # Every anchor removed from the appliance: the head's signature (which needs the key) still
    # catches it, and so do the published anchors.
    sql(demo, "DELETE FROM journal_anchor")
    result = verify(demo)
    assert result.returncode == 1
    assert "the head's signature does not cover this entry" in result.stdout
    result = verify(demo, "--anchors", str(published))
    assert result.returncode == 1
    assert f"BROKEN at entry {first_anchor} " in result.stdout


def _rewrite_from(demo: DemoSystem, start: int) -> None:
    rows = sql(demo, "SELECT seq, prev_hash, at, kind, actor, subject, data FROM journal ORDER BY seq")
    prev = auditchain.GENESIS
    with database(demo) as conn:
        cur = conn.cursor()
        ph = "%s" if PG.match(demo.env.get("DATABASE_URL", "")) else "?"
        for seq, _prev, at, kind, actor, subject, data in rows:
            actor = json.loads(actor) if isinstance(actor, str) else actor
            data = json.loads(data) if isinstance(data, str) else data
            if seq == start:
                data = {**data, "kind": "forged"}
            body = auditchain.entry_body(
                seq=seq, prev=prev, at=_dt(at), kind=kind, actor=actor, subject=subject, data=data
            )
            digest = auditchain.sha256_hex(auditchain.canonical(body))
            if seq >= start:
                cur.execute(
                    f"UPDATE journal SET prev_hash = {ph}, hash = {ph}, data = {ph} WHERE seq = {ph}",
                    (prev, digest, json.dumps(data), seq),
                )
            prev = digest
        cur.execute(f"UPDATE journal_head SET hash = {ph} WHERE id = 1", (prev,))


def _dt(value: Any) -> Any:
    from datetime import UTC, datetime

    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


APPENDER = """
import os, sys, time, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
django.setup()
from updates.actors import Actor
from audit.services import journal_append
name, count, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
open(go + "." + name, "w").close()  # ready
while not os.path.exists(go):
    time.sleep(0.005)
for i in range(count):
    journal_append(kind="test.concurrent", actor=Actor("cli", name), subject="test", data={"i": i})
    time.sleep(0.001)  # let the other writer's busy handler in (SQLite waits with backoff)
"""


def test_two_processes_appending_at_once_never_fork_the_chain(demo: DemoSystem, tmp_path: Path) -> None:
    assert demo.install("manifest-v2.yaml").returncode == 0
    before = head(demo)
    go = tmp_path / "go"
    env = {**demo.env, "PYTHONPATH": str(ROOT), "ORCH_AUDIT_ANCHOR_EVERY": "50"}
    writers = [
        subprocess.Popen([sys.executable, "-c", APPENDER, name, "150", str(go)], env=env, cwd=ROOT)
        for name in ("a", "b")
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{n}").exists() for n in ("a", "b")) and time.monotonic() < deadline:
        time.sleep(0.01)  # both have set up Django and wait at the barrier
    go.touch()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    rows = sql(demo, "SELECT seq, actor FROM journal WHERE kind = 'test.concurrent' ORDER BY seq")
    assert [r[0] for r in rows] == list(range(before + 1, before + 301))
    names = [(json.loads(r[1]) if isinstance(r[1], str) else r[1])["name"] for r in rows]
    switches = sum(1 for x, y in itertools.pairwise(names) if x != y)
    assert switches > 1, "the two writers never overlapped: the test proved nothing"
    result = verify(demo)
    assert result.returncode == 0, result.stdout
    assert f"entries 1-{before + 300} " in result.stdout
    anchored = {int(r[0]) for r in sql(demo, "SELECT seq FROM journal_anchor")}
    assert {n for n in range(before + 1, before + 301) if n % 50 == 0} <= anchored  # every 50 entries


# ----- the rows people read, and the head, sealed to the chain (issue 24) ---------------------------


def _failed_step(demo: DemoSystem) -> tuple[int, int, int]:
    """(step id, deployment id, seq of its entry) of R456's failed ArtifactCommit."""
    step, deployment, seal = sql(
        demo,
        "SELECT id, deployment_id, seal FROM updates_step WHERE component = 'rtos.R456' "
        "AND state = 'ArtifactCommit' AND exit_code = 1",
    )[0]
    (seq,) = sql(demo, "SELECT seq FROM journal WHERE hash = ?", seal)[0]
    return int(step), int(deployment), int(seq)


def test_an_untampered_journal_and_its_rows_verify(demo: DemoSystem) -> None:
    walk(demo)
    unsealed = sql(demo, "SELECT COUNT(*) FROM updates_step WHERE seal = ''")[0][0]
    assert unsealed == 0
    assert sql(demo, "SELECT COUNT(*) FROM updates_deployment WHERE seal = ''")[0][0] == 0
    (signature,) = sql(demo, "SELECT signature FROM journal_head WHERE id = 1")[0]
    assert len(signature) == 128
    result = verify(demo)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("column", "value"),
    [("exit_code", "0"), ("stdout", "'all good'")],
    ids=["exit-code", "output"],
)
def test_an_edited_step_row_fails_verify_naming_the_row_and_its_entry(
    demo: DemoSystem, column: str, value: str
) -> None:
    walk(demo)
    step, deployment, seq = _failed_step(demo)
    sql(demo, f"UPDATE updates_step SET {column} = {value} WHERE id = ?", step)
    result = verify(demo)
    assert result.returncode == 1
    expected = (
        f"journal BROKEN at step {step} (deployment {deployment}, rtos.R456 ArtifactCommit): "
        f"{column} differs from journal entry {seq}"
    )
    assert result.stdout.startswith(expected), result.stdout


def test_an_edited_deployment_status_fails_verify_naming_the_row(demo: DemoSystem) -> None:
    walk(demo)
    (seal,) = sql(demo, "SELECT seal FROM updates_deployment WHERE id = 2")[0]
    (seq,) = sql(demo, "SELECT seq FROM journal WHERE hash = ?", seal)[0]
    sql(demo, "UPDATE updates_deployment SET status = 'succeeded' WHERE id = 2")
    result = verify(demo)
    assert result.returncode == 1
    assert result.stdout.startswith(
        f"journal BROKEN at deployment 2: status differs from journal entry {seq}"
    )


def test_an_edited_deployment_actor_fails_verify_naming_the_row(demo: DemoSystem) -> None:
    """Who asked is tied to the chain too: the row's actor is the one its created entry names."""
    walk(demo)
    (created,) = sql(
        demo, "SELECT seq FROM journal WHERE kind = 'deployment.created' AND subject = ?", "deployment:2"
    )[0]
    sql(demo, """UPDATE updates_deployment SET actor = '{"kind": "user", "name": "mallory"}' WHERE id = 2""")
    result = verify(demo)
    assert result.returncode == 1
    assert result.stdout.startswith(
        f"journal BROKEN at deployment 2: actor differs from journal entry {created}"
    ), result.stdout


def test_a_cut_tail_with_the_head_rewound_fails_verify(demo: DemoSystem) -> None:
    walk(demo)
    last = head(demo)
    cut = last - 3
    sql(demo, "DELETE FROM journal WHERE seq > ?", cut)
    (digest,) = sql(demo, "SELECT hash FROM journal WHERE seq = ?", cut)[0]
    sql(demo, "UPDATE journal_head SET seq = ?, hash = ? WHERE id = 1", cut, digest)
    result = verify(demo)
    assert result.returncode == 1
    assert result.stdout.startswith(f"journal BROKEN at entry {cut} ("), result.stdout
    assert "the head's signature does not cover this entry" in result.stdout


def test_entries_rewritten_after_the_last_anchor_fail_verify(demo: DemoSystem) -> None:
    walk(demo)
    anchored = int(sql(demo, "SELECT MAX(seq) FROM journal_anchor")[0][0])
    # After the last anchor (deployment 2's end): a housekeeping run appends a few more entries.
    assert demo.run("audit", "prune", "--before", "2000-01-01").returncode == 0
    assert head(demo) > anchored
    _rewrite_from(demo, head(demo))  # every hash and the head's hash recomputed
    result = verify(demo)
    assert result.returncode == 1
    assert result.stdout.startswith(f"journal BROKEN at entry {head(demo)} ("), result.stdout
    assert "the head's signature does not cover this entry" in result.stdout


def test_the_anchor_log_lines_are_taken_back_by_verify(demo: DemoSystem, tmp_path: Path) -> None:
    """Each anchor is an INFO line of `orchestrator.audit` on stderr (journald): with those lines
    kept elsewhere, a cut back to before an anchor is caught even with the key in hand."""
    demo.env["LOG_LEVEL"] = "INFO"  # as the installed command reads it from the units' env file
    result = demo.install("manifest-v2.yaml")
    assert result.returncode == 0
    lines = [line for line in result.stderr.splitlines() if " orchestrator.audit " in line]
    assert lines and all("journal anchor {" in line for line in lines), result.stderr
    kept = tmp_path / "journal.log"
    kept.write_text(result.stderr)
    anchor = json.loads(lines[-1].split("journal anchor ", 1)[1])
    assert anchor["seq"] <= head(demo) and len(anchor["signature"]) == 128
    assert verify(demo, "--anchors", str(kept)).returncode == 0
    # Root on the appliance: cut the entries from before the anchor on, drop every anchor row and
    # re-sign the rewound head with the appliance's own key.
    cut = anchor["seq"] - 2
    sql(demo, "DELETE FROM journal WHERE seq > ?", cut)
    sql(demo, "DELETE FROM journal_anchor")
    digest, at = sql(demo, "SELECT hash, at FROM journal WHERE seq = ?", cut)[0]
    key = serialization.load_pem_private_key(
        (demo.datastore / "audit" / "journal-signing-key.pem").read_bytes(), password=None
    )
    assert isinstance(key, auditchain.Ed25519PrivateKey)
    fingerprint, at = auditchain.key_fingerprint(key.public_key()), auditchain.iso(_dt(at))
    message = auditchain.head_message(seq=cut, hash=digest, at=at, key_fingerprint=fingerprint)
    sql(
        demo,
        "UPDATE journal_head SET seq = ?, hash = ?, at = ?, key_fingerprint = ?, signature = ? WHERE id = 1",
        cut,
        digest,
        at,
        fingerprint,
        auditchain.sign(key, message),
    )
    # (The database alone still notices here only because deployment 1's seal names a removed
    # entry: a careful attacker re-points it too.) The log copy catches the cut whatever the rows say.
    result = verify(demo, "--anchors", str(kept))
    assert result.returncode == 1
    assert f"an anchor signed at {anchor['at']} covers entry {anchor['seq']}" in result.stdout


# ----- reports ------------------------------------------------------------------------------------


def test_the_report_rows_equal_what_the_deployments_did(demo: DemoSystem) -> None:
    walk(demo)
    report = json.loads(demo.run("audit", "report", "--format", "json").stdout)
    history = {d["id"]: d for d in json.loads(demo.run("history", "--json").stdout)}
    assert [d["id"] for d in report["deployments"]] == sorted(history)
    for section in report["deployments"]:
        steps = history[section["id"]]["steps"]
        fields = ("component", "state", "argv", "exit_code", "error", "answer")
        assert [{k: s[k] for k in fields} for s in section["steps"]] == [
            {k: s[k] for k in fields} for s in steps
        ]
        assert [s["started_at"][:23] for s in section["steps"]] == [_iso(s["started_at"]) for s in steps]
        assert section["actor"]["kind"] == "cli" and section["actor"]["via"] == "cli"
    v2, v3 = report["deployments"]
    assert (v2["manifest_from"], v2["manifest_to"]["name"]) == (None, "system-core-v2")
    assert (v3["manifest_from"]["name"], v3["manifest_to"]["name"]) == ("system-core-v2", "system-core-v3")
    assert v2["outcome"]["status"] == "succeeded" and v3["outcome"]["status"] == "rolled_back"
    assert {c["key"]: (c["before"], c["after"]) for c in v3["components"]} == {
        "gateway.G13": ("gateway-v2", "gateway-v2"),
        "rtos.R998": ("rtos-v2", "rtos-v2"),
        "rtos.R456": ("rtos-v2", "rtos-v2"),
    }
    failed = [s for s in v3["steps"] if s["exit_code"] not in (0, None)]
    assert [(s["component"], s["state"]) for s in failed] == [("rtos.R456", "ArtifactCommit")]
    assert report["journal"]["ok"] is True


def _iso(text: str) -> str:
    """history's str(datetime) "2026-11-29 20:41:08.667703+00:00" as the journal's ISO prefix."""
    return text.replace(" ", "T")[:23]


def test_the_report_as_csv_and_printable_html(demo: DemoSystem) -> None:
    walk(demo)
    rows = list(csv.DictReader(io.StringIO(demo.run("audit", "report", "--format", "csv").stdout)))
    # One row per deployment and component: versions before and after, from the journal.
    assert [(r["deployment"], r["component"], r["version_before"], r["version_after"]) for r in rows] == [
        ("1", "gateway.G13", "gateway-v1", "gateway-v2"),
        ("1", "rtos.R998", "rtos-v1", "rtos-v2"),
        ("1", "rtos.R456", "rtos-v1", "rtos-v2"),
        ("2", "gateway.G13", "gateway-v2", "gateway-v2"),
        ("2", "rtos.R998", "rtos-v2", "rtos-v2"),
        ("2", "rtos.R456", "rtos-v2", "rtos-v2"),
    ]
    assert {(r["manifest_from"], r["manifest_to"], r["outcome"]) for r in rows} == {
        ("", "system-core-v2", "succeeded"),
        ("system-core-v2", "system-core-v3", "rolled_back"),
    }
    assert all(r["actor"].startswith("cli ") and r["bundle_sha256"] == "" for r in rows)
    assert rows[3]["reason"].startswith("rtos.R456: ArtifactCommit")
    steps = sum(len(d["steps"]) for d in json.loads(demo.run("history", "--json").stdout))
    step_rows = demo.run("audit", "report", "--format", "steps-csv").stdout.splitlines()
    assert len(step_rows) == 1 + steps and step_rows[0].startswith("deployment,entry,step,component,state,")
    html = demo.run("audit", "report", "--format", "html").stdout
    assert "@media print" in html and html.count('<section class="deployment">') == 2
    assert "rtos.R456" in html and "Rolled back" in html  # the status in its one wording


def test_a_bundle_deployment_reports_the_bundle_and_its_signers(demo: DemoSystem, tmp_path: Path) -> None:
    bundle = tmp_path / "v2.tar"
    subprocess.run(
        ["tar", "-cf", str(bundle), "-C", str(demo.system), "manifest-v2.yaml", "artifacts"], check=True
    )
    assert demo.run("install", str(bundle)).returncode == 0
    report = json.loads(demo.run("audit", "report", "--format", "json").stdout)
    shown = json.loads(demo.run("bundle", "show", "1", "--json").stdout)
    (section,) = report["deployments"]
    assert section["bundle"]["sha256"] == shown["sha256"]
    assert {a["sha256"] for a in section["bundle"]["artifacts"]} == {a["sha256"] for a in shown["artifacts"]}
    kinds = [r[0] for r in sql(demo, "SELECT kind FROM journal WHERE subject = 'bundle:1' ORDER BY seq")]
    assert kinds == ["bundle.added", "bundle.accepted"]


def test_resume_and_rollback_record_who_asked(demo: DemoSystem) -> None:
    assert demo.install("manifest-v2.yaml", "--stop-before", "ArtifactCommit").returncode == 0
    assert demo.run("rollback").returncode == 1
    report = json.loads(demo.run("audit", "report", "--format", "json").stdout)
    (section,) = report["deployments"]
    assert [(r["kind"], r["actor"]["kind"]) for r in section["requests"]] == [("rollback", "cli")]
    assert section["outcome"]["status"] == "rolled_back"


def test_the_update_module_is_recorded_as_the_caller(demo: DemoSystem, tmp_path: Path) -> None:
    # The shape of Mender's module: a script of that name that runs the orchestrator.
    module = tmp_path / "modules" / "v3" / "mender-orchestrator-manifest"
    module.parent.mkdir(parents=True)
    module.write_text(f'#!/bin/sh\n"{ROOT}/bin/mender-orchestrator" install "$2"\n')
    module.chmod(0o755)
    result = subprocess.run(
        [str(module), "ArtifactInstall", str(demo.system / "manifest-v2.yaml")],
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(demo.run("audit", "report", "--format", "json").stdout)
    actor = report["deployments"][0]["actor"]
    assert actor["kind"] == "cli" and actor["via"] == "update-module"


# ----- retention, keys ----------------------------------------------------------------------------


def test_pruning_clears_output_keeps_the_digests_and_is_itself_an_entry(demo: DemoSystem) -> None:
    walk(demo)
    before = json.loads(demo.run("audit", "report", "--format", "json").stdout)
    result = demo.run("audit", "prune", "--before", "2999-01-01")
    assert result.returncode == 0 and "cleared the output of" in result.stdout
    assert sql(demo, "SELECT COUNT(*) FROM updates_step WHERE stdout <> '' OR stderr <> ''")[0][0] == 0
    assert verify(demo).returncode == 0
    after = json.loads(demo.run("audit", "report", "--format", "json").stdout)
    assert [d["steps"] for d in after["deployments"]] == [d["steps"] for d in before["deployments"]]
    (pruned,) = sql(demo, "SELECT data FROM journal WHERE kind = 'audit.pruned'")
    data = json.loads(pruned[0]) if isinstance(pruned[0], str) else pruned[0]
    assert data["before"] == "2999-01-01T00:00:00.000000Z" and data["steps"] > 0


def test_the_retention_policy_prunes_only_what_is_older(demo: DemoSystem) -> None:
    walk(demo)
    first = int(sql(demo, "SELECT MIN(id) FROM updates_step WHERE deployment_id = 2")[0][0])
    sql(
        demo,
        "UPDATE updates_step SET ended_at = started_at - INTERVAL '40 days' WHERE deployment_id = 1"
        if PG.match(demo.env.get("DATABASE_URL", ""))
        else "UPDATE updates_step SET ended_at = '2000-01-01 00:00:00' WHERE deployment_id = 1",
    )
    demo.env["ORCH_AUDIT_OUTPUT_RETENTION_DAYS"] = "30"
    result = demo.run("audit", "prune", "--policy")
    assert result.returncode == 0, result.stderr
    kept = sql(demo, "SELECT COUNT(*) FROM updates_step WHERE id >= ? AND stdout <> ''", first)[0][0]
    cleared = sql(demo, "SELECT COUNT(*) FROM updates_step WHERE deployment_id = 1 AND stdout <> ''")[0][0]
    assert (cleared, kept > 0) == (0, True)
    # The backdating above is itself an edit of sealed rows, and verify names it; the cleared
    # output (recorded by `audit.pruned`) is not what it complains about.
    result = verify(demo)
    assert result.returncode == 1
    assert re.match(r"^journal BROKEN at step \d+ \(deployment 1, .*\): ended_at differs", result.stdout)
    assert demo.run("audit", "prune", "--policy").stdout.startswith("cleared the output of 0 steps")


def test_the_signing_key_is_private_and_its_public_half_exportable(demo: DemoSystem, tmp_path: Path) -> None:
    assert demo.install("manifest-v2.yaml").returncode == 0
    key = demo.datastore / "audit" / "journal-signing-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    pem = demo.run("audit", "public-key").stdout
    (tmp_path / "pub.pem").write_text(pem)
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(tmp_path / "pub.pem"), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    assert demo.run("audit", "public-key", "--fingerprint").stdout.strip() == auditchain.sha256_hex(der)


# ----- exports ------------------------------------------------------------------------------------


def _procedure() -> str:
    """The offline procedure exactly as docs/audit.md prints it."""
    text = (ROOT / "docs" / "audit.md").read_text()
    match = re.search(r"<!-- offline-procedure -->\n```sh\n(.*?)```", text, re.S)
    assert match, "docs/audit.md lost its offline procedure"
    return match.group(1)


def _run_procedure(workdir: Path, archive: Path) -> subprocess.CompletedProcess[str]:
    workdir.mkdir()
    (workdir / "audit.tar").write_bytes(archive.read_bytes())
    return subprocess.run(
        ["bash", "-c", _procedure()],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": os.environ["PATH"], "LC_ALL": "C"},
    )


def test_an_export_verifies_offline_and_one_flipped_byte_fails_it(demo: DemoSystem, tmp_path: Path) -> None:
    walk(demo)
    archive = tmp_path / "audit.tar"
    result = demo.run("audit", "export", "-o", str(archive))
    assert result.returncode == 0 and result.stdout.startswith(f"wrote {archive}: {head(demo)} entries")
    assert verify(demo, "--export", str(archive)).returncode == 0
    fingerprint = demo.run("audit", "public-key", "--fingerprint").stdout.strip()
    good = _run_procedure(tmp_path / "good", archive)
    assert good.returncode == 0, good.stdout + good.stderr
    assert fingerprint in good.stdout and f"chain intact: {head(demo)} entries" in good.stdout

    data = archive.read_bytes()
    positions = _flip_positions(data)
    for pos in positions:  # in-process: the same check as `audit verify --export`
        flipped = data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :]
        with pytest.raises(auditchain.ArchiveError):
            auditchain.archive_read(flipped)
    for name, pos in (("content", len(data) // 2), ("header", 100), ("sig-padding", len(data) - 1000)):
        bad = tmp_path / f"bad-{name}.tar"
        bad.write_bytes(data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :])
        assert verify(demo, "--export", str(bad)).returncode == 1, name
        assert _run_procedure(tmp_path / f"shell-{name}", bad).returncode != 0, name


def _flip_positions(data: bytes) -> list[int]:
    """Every byte of every tar header, every byte of the signed tail, and a stride through the rest."""
    positions = set(range(len(data) - auditchain.TAIL, len(data)))
    offset = 0
    while offset < len(data) - auditchain.TAIL:
        positions.update(range(offset, offset + 512))
        size = int(data[offset + 124 : offset + 136].rstrip(b"\0 ") or b"0", 8)
        offset += 512 + size + (-size % 512)
    positions.update(range(0, len(data), 53))
    return sorted(positions)


def test_an_export_of_a_rewritten_chain_fails_offline(demo: DemoSystem, tmp_path: Path) -> None:
    walk(demo)
    _rewrite_from(demo, 3)
    archive = tmp_path / "audit.tar"
    assert demo.run("audit", "export", "-o", str(archive)).returncode == 0
    result = verify(demo, "--export", str(archive))
    assert result.returncode == 1 and "does not match the anchor signed at" in result.stdout
    assert _run_procedure(tmp_path / "shell", archive).returncode != 0
