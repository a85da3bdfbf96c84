"""audit/chain.py without a database: the chain, the signed head, the row checks, anchor lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from audit import chain

KEY = chain.Ed25519PrivateKey.generate()
FINGERPRINT = chain.key_fingerprint(KEY.public_key())
T0 = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)


def entries(count: int) -> list[dict[str, Any]]:
    bodies, prev = [], chain.GENESIS
    for seq in range(1, count + 1):
        data = {"step": seq, "component": "rtos.R456", "state": "Download", "exit_code": 0}
        body = chain.entry_body(
            seq=seq,
            prev=prev,
            at=T0 + timedelta(seconds=seq),
            kind="step.finished",
            actor=None,
            subject="deployment:7",
            data=data,
        )
        bodies.append(body)
        prev = chain.sha256_hex(chain.canonical(body))
    return bodies


def signed_head(body: dict[str, Any]) -> chain.SignedHead:
    digest = chain.sha256_hex(chain.canonical(body))
    message = chain.head_message(seq=body["seq"], hash=digest, at=body["at"], key_fingerprint=FINGERPRINT)
    return chain.SignedHead(body["seq"], digest, body["at"], FINGERPRINT, chain.sign(KEY, message))


def check(bodies: list[dict[str, Any]], head: chain.SignedHead) -> chain.Verdict:
    checker = chain.ChainChecker(public_key=KEY.public_key())
    for body in bodies:
        checker.feed(body)
    return checker.finish(head=head)


def test_an_intact_chain_with_its_signed_head_verifies() -> None:
    bodies = entries(5)
    verdict = check(bodies, signed_head(bodies[-1]))
    assert verdict.ok and verdict.summary().startswith("journal intact: entries 1-5 (5)")


def test_a_cut_tail_with_the_head_rewound_and_its_hash_recomputed_is_named() -> None:
    bodies = entries(5)
    stale = signed_head(bodies[-1])
    digest = chain.sha256_hex(chain.canonical(bodies[2]))
    rewound = chain.SignedHead(3, digest, bodies[2]["at"], FINGERPRINT, stale.signature)
    verdict = check(bodies[:3], rewound)
    assert verdict.broken is not None and verdict.broken.seq == 3
    assert "the head's signature does not cover this entry" in str(verdict.broken)


def test_a_head_whose_signature_was_removed_is_named() -> None:
    bodies = entries(3)
    head = signed_head(bodies[-1])
    verdict = check(bodies, chain.SignedHead(head.seq, head.hash, head.at, FINGERPRINT, ""))
    assert verdict.broken is not None and "not signed" in verdict.broken.problem


def test_an_anchor_signature_cannot_stand_in_for_the_head() -> None:
    bodies = entries(3)
    head = signed_head(bodies[-1])
    anchor = chain.anchor_message(seq=head.seq, hash=head.hash, at=head.at, key_fingerprint=FINGERPRINT)
    forged = chain.SignedHead(head.seq, head.hash, head.at, FINGERPRINT, chain.sign(KEY, anchor))
    assert not check(bodies, forged).ok


def test_a_rewritten_tail_fails_against_the_head_signed_before() -> None:
    bodies = entries(4)
    head = signed_head(bodies[-1])
    bodies[3] = {**bodies[3], "data": {**bodies[3]["data"], "exit_code": 1}}  # rewritten, re-hashed
    digest = chain.sha256_hex(chain.canonical(bodies[3]))
    verdict = check(bodies, chain.SignedHead(4, digest, head.at, FINGERPRINT, head.signature))
    assert verdict.broken is not None and verdict.broken.seq == 4


STEP_ROW: dict[str, Any] = {
    "id": 42,
    "deployment_id": 7,
    "component": "rtos.R456",
    "state": "ArtifactCommit",
    "argv": ["rtos", "ArtifactCommit"],
    "started_at": "2026-11-29T20:00:01.000000Z",
    "ended_at": "2026-11-29T20:00:02.000000Z",
    "exit_code": 1,
    "timed_out": False,
    "answer": "",
    "error": "exit code 1",
    "stdout": "out",
    "stderr": "",
}


def step_entry(**changes: Any) -> dict[str, Any]:
    row = {**STEP_ROW, **changes}
    data = {k: row[k] for k in chain.STEP_FIELDS} | {
        "step": row["id"],
        "stdout_sha256": chain.sha256_hex(row["stdout"].encode()),
        "stderr_sha256": chain.EMPTY_SHA256,
    }
    return {"seq": 311, "kind": "step.finished", "subject": "deployment:7", "data": data}


def test_a_step_row_matches_its_entry_and_each_edit_is_named() -> None:
    assert chain.step_row_problem(STEP_ROW, step_entry(), pruned=False) is None
    edited = {**STEP_ROW, "exit_code": 0}
    assert (
        chain.step_row_problem(edited, step_entry(), pruned=False)
        == "exit_code differs from journal entry 311"
    )
    output = {**STEP_ROW, "stdout": "all good"}
    assert chain.step_row_problem(output, step_entry(), pruned=False).startswith("stdout differs")  # type: ignore[union-attr]
    other = step_entry(id=43)
    assert "not this step" in (chain.step_row_problem(STEP_ROW, other, pruned=False) or "")


def test_cleared_output_is_accepted_only_for_a_pruned_step() -> None:
    cleared = {**STEP_ROW, "stdout": ""}
    assert chain.step_row_problem(cleared, step_entry(), pruned=True) is None
    assert chain.step_row_problem(cleared, step_entry(), pruned=False) is not None
    assert chain.in_ranges(42, [[40, 45]]) and not chain.in_ranges(42, [[1, 41], [43, 50]])


def test_an_unsealed_step_may_only_be_a_call_still_running() -> None:
    running = {**STEP_ROW, "ended_at": None, "exit_code": None, "error": "", "stdout": ""}
    assert chain.step_unsealed_problem(running) is None
    assert chain.step_unsealed_problem(STEP_ROW) is not None


def test_a_deployment_row_matches_its_status_entry_and_created_entry() -> None:
    row = {
        "id": 7,
        "status": "rolled_back",
        "reason": "R456 failed",
        "components": ["rtos.R456"],
        "manifest_id": 3,
        "kind": "install",
        "forced_by": "alice",
        "forced_reason": "field fix",
    }
    finished = {
        "seq": 320,
        "kind": "deployment.finished",
        "subject": "deployment:7",
        "data": {"status": "rolled_back", "reason": "R456 failed", "components": ["rtos.R456"]},
    }
    created = {
        "seq": 300,
        "kind": "deployment.created",
        "subject": "deployment:7",
        "data": {"kind": "install", "manifest": {"id": 3}, "forced": {"by": "alice", "reason": "field fix"}},
    }
    assert chain.deployment_row_problem(row, finished, created) is None
    assert chain.deployment_row_problem({**row, "status": "succeeded"}, finished, created) == (
        "status differs from journal entry 320"
    )
    assert chain.deployment_row_problem({**row, "forced_reason": "x"}, finished, created) == (
        "forced_reason differs from journal entry 300"
    )
    started = {"seq": 305, "kind": "deployment.started", "subject": "deployment:7", "data": {}}
    assert chain.deployment_row_problem({**row, "status": "running"}, started, created) is None


def test_anchors_are_read_back_from_jsonl_text_and_json_log_lines() -> None:
    anchor = chain.Anchor(5, "ab" * 32, "2026-11-29T20:00:05.000000Z", FINGERPRINT, "cd" * 64)
    line = chain.canonical(anchor.as_json()).decode()
    text_log = f"2026-11-29T20:00:05.001Z INFO orchestrator.audit journal anchor {line}"
    json_log = json.dumps(
        {"level": "INFO", "logger": "orchestrator.audit", "message": f"journal anchor {line}"}
    )
    data = "\n".join([line, text_log, json_log, "2026-11-29 INFO orchestrator.deployment started", ""])
    assert list(chain.anchors_from_jsonl(data.encode())) == [anchor, anchor, anchor]


def test_a_row_break_names_the_row() -> None:
    broken = chain.Break(
        311,
        "t",
        "w",
        "exit_code differs from journal entry 311",
        row="step 42 (deployment 7, rtos.R456 ArtifactCommit)",
    )
    assert (
        str(broken)
        == "step 42 (deployment 7, rtos.R456 ArtifactCommit): exit_code differs from journal entry 311"
    )
