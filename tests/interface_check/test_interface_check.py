"""`interface-check`: the demo's interfaces pass; each deliberately broken interface is caught
by exactly the check for the rule it breaks; the CLI's formats and exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.interface_check.maker import QUERY_MUTATIONS, STATE_MUTATIONS, Spec, make_artifact, make_interface
from updates.cli import main
from updates.engine.artifact import write_artifact
from updates.engine.conformance import Report, Subject, check_interface
from updates.engine.errors import InvalidInput

REPO = Path(__file__).resolve().parents[2]


def subject(path: Path, device: Path, **kw: object) -> Subject:
    return Subject(path=path, component_type="board", component_id="B1", args=(str(device),), **kw)  # type: ignore[arg-type]


def run(tmp_path: Path, spec: Spec, *, destructive: bool = False, **kw: object) -> Report:
    path, device = make_interface(tmp_path, spec)
    artifact = make_artifact(tmp_path, spec) if destructive else None
    return check_interface(subject(path, device, **kw), artifact=artifact, destructive=destructive)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo system, with v2 of both interfaces' artifacts built by the project's writer."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    subprocess.run([REPO / "demo" / "setup", "--no-artifacts", root], check=True, capture_output=True)
    for iface in ("gateway", "rtos"):
        image = root / f"{iface}-v2.img"
        image.write_bytes(f"demo firmware {iface}-v2\n".encode())
        out = root / "system" / "artifacts" / f"{iface}-v2.mender"
        write_artifact(
            out,
            kind="module-image",
            name=f"{iface}-v2",
            device_types=[iface],
            files=[image],
            payload_type=iface,
        )
    return root


@pytest.mark.parametrize(("iface", "device"), [("gateway", "G13"), ("rtos", "R998")])
def test_the_demo_interfaces_pass_read_only_and_destructive(demo: Path, iface: str, device: str) -> None:
    path = demo / "share" / "interfaces" / "v1" / iface
    s = Subject(path=path, component_type=iface, component_id=device, args=(device,))
    before = (demo / "devices" / device / "version").read_text()
    queries = check_interface(s)
    assert not queries.failed and not queries.warned_rules(), [
        r for r in queries.results if r.status != "pass"
    ]
    assert (demo / "devices" / device / "version").read_text() == before  # read-only
    report = check_interface(
        s, artifact=demo / "system" / "artifacts" / f"{iface}-v2.mender", destructive=True
    )
    assert not report.failed, [r for r in report.results if r.status != "pass"]
    assert {r.rule for r in report.results if r.status == "pass"} >= {
        "P-UNKNOWN-1",
        "P-DOWNLOAD-1",
        "P-INSTALL-1",
        "P-ROLLBACK-1",
        "P-COMMIT-1",
        "P-CLEANUP-1",
        "P-RERUN-1",
    }
    assert (demo / "devices" / device / "version").read_text() == f"{iface}-v2\n"


@pytest.mark.parametrize(
    "spec",
    [
        Spec(),
        Spec(streams=False),
        Spec().with_answer("ProvidePayloadFileSizes", "Yes"),
        Spec().with_answer("NeedsUnpackedArtifact", "No"),
        Spec().with_answer("NeedsArtifactReboot", "Yes"),
        Spec().with_answer("NeedsArtifactReboot", "Automatic"),
    ],
    ids=["streams", "files-tree", "with-sizes", "packed", "reboot-yes", "reboot-automatic"],
)
def test_a_well_formed_interface_passes_every_check(tmp_path: Path, spec: Spec) -> None:
    report = run(tmp_path, spec, destructive=True)
    assert not report.failed, [r for r in report.results if r.status != "pass"]
    download = next(r for r in report.results if r.rule == "P-DOWNLOAD-1")
    assert download.seen.startswith("files tree" if not spec.streams else "streams tree")
    assert ("with payload sizes" in download.seen) == (spec.answers["ProvidePayloadFileSizes"] == "Yes")


@pytest.mark.parametrize(("mutation", "rule"), sorted(QUERY_MUTATIONS.items()))
def test_a_broken_query_is_caught_by_exactly_its_check(tmp_path: Path, mutation: str, rule: str) -> None:
    report = run(tmp_path, Spec(mutation=mutation))
    assert report.failed_rules() == {rule}, [r for r in report.results if r.status == "fail"]


@pytest.mark.parametrize(("mutation", "rule"), sorted(STATE_MUTATIONS.items()))
def test_a_broken_state_is_caught_by_exactly_its_check(tmp_path: Path, mutation: str, rule: str) -> None:
    report = run(tmp_path, Spec(mutation=mutation), destructive=True)
    assert report.failed_rules() == {rule}, [r for r in report.results if r.status == "fail"]


def test_a_query_that_hangs_with_stdin_closed_is_killed_at_the_timeout(tmp_path: Path) -> None:
    path, device = make_interface(tmp_path, Spec())
    text = path.read_text().replace("    Inventory)", "    Inventory) read -r line; sleep 30;", 1)
    path.write_text(text)
    report = check_interface(subject(path, device, timeout=1.0))
    assert report.failed_rules() == {"P-TIMEOUT-1"}
    hung = next(r for r in report.results if r.status == "fail")
    assert hung.subject == "Inventory" and hung.seconds is not None and hung.seconds < 10


def test_a_state_that_hangs_is_caught_by_the_timeout(tmp_path: Path) -> None:
    path, device = make_interface(tmp_path, Spec())
    path.write_text(path.read_text().replace("    ArtifactCommit)", "    ArtifactCommit) sleep 30;", 1))
    report = check_interface(
        subject(path, device, timeout=2.0), artifact=make_artifact(tmp_path, Spec()), destructive=True
    )
    assert report.failed_rules() == {"P-TIMEOUT-1"}


def test_a_slow_query_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    path, device = make_interface(tmp_path, Spec())
    path.write_text(path.read_text().replace("    Provides)", "    Provides) sleep 0.4;", 1))
    report = check_interface(subject(path, device, slow=0.2))
    assert not report.failed and report.warned_rules() == {"P-SLOW-1"}


def test_a_file_that_is_not_executable_fails_only_that_check(tmp_path: Path) -> None:
    path, device = make_interface(tmp_path, Spec())
    path.chmod(0o644)
    report = check_interface(subject(path, device))
    assert report.failed_rules() == {"P-EXEC-1"} and len(report.results) == 1


def test_destructive_without_an_artifact_or_with_a_foreign_one_is_a_bad_argument(tmp_path: Path) -> None:
    path, device = make_interface(tmp_path, Spec())
    with pytest.raises(InvalidInput, match="--artifact"):
        check_interface(subject(path, device), destructive=True)
    foreign = make_artifact(tmp_path, Spec(name="modem"))
    with pytest.raises(InvalidInput, match="payload type 'modem'"):
        check_interface(subject(path, device), artifact=foreign, destructive=True)


def test_the_command_exits_0_1_2_and_writes_json_and_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, device = make_interface(tmp_path / "good", Spec())
    bad, bad_device = make_interface(tmp_path / "bad", Spec(mutation="provides-device-type"))
    common = ["--type", "board", "--id", "B1"]
    assert main(["interface-check", str(good), *common, "--arg", str(device)]) == 0
    out = capsys.readouterr().out
    assert "PASS P-PROVIDES-3" in out and out.splitlines()[-1].startswith("OK: ")
    report = tmp_path / "report.json"
    assert (
        main(
            [
                "interface-check",
                str(bad),
                *common,
                "--arg",
                str(bad_device),
                "--format",
                "json",
                "-o",
                str(report),
            ]
        )
        == 1
    )
    doc = json.loads(report.read_text())
    assert doc["ok"] is False
    assert [c["rule"] for c in doc["checks"] if c["status"] == "fail"] == ["P-PROVIDES-3"]
    assert main(["interface-check", str(bad), *common, "--arg", str(bad_device), "--format", "junit"]) == 1
    suite = ET.fromstring(capsys.readouterr().out).find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and "device_type=board" in (failure.get("message") or "")
    assert main(["interface-check", str(good), *common, "--destructive"]) == 2
    assert "--destructive needs --artifact" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["interface-check", str(good)])  # --type is required
    assert exc.value.code == 2
