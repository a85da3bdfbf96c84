"""`ArtifactServer` in mender-orchestrator.conf: our addition, validated as strictly as the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from updates.engine.config import ArtifactServerConfig, load_config
from updates.engine.manifest import InputError


def _load(tmp_path: Path, server: object) -> object:
    (tmp_path / "mender-orchestrator.conf").write_text(json.dumps({"ArtifactServer": server}, indent=1))
    return load_config(tmp_path, None).artifact_server


def _problems(tmp_path: Path, server: object) -> list[str]:
    with pytest.raises(InputError) as caught:
        _load(tmp_path, server)
    return [f"{p.field}: {p.message}" for p in caught.value.problems]


def test_it_reads_the_artifact_server_settings(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("device-jwt\n")
    conf = {
        "URL": "https://hosted.mender.io",
        "TokenFile": str(tmp_path / "token"),
        "TimeoutSeconds": 5,
        "Retries": 0,
    }
    assert _load(tmp_path, conf) == ArtifactServerConfig(
        "https://hosted.mender.io", "device-jwt", tmp_path / "token", 5, 0
    )


def test_it_reports_a_missing_empty_or_directory_token_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    assert _problems(tmp_path, {"URL": "https://x.example", "TokenFile": str(tmp_path)}) == [
        f"ArtifactServer.TokenFile: cannot read {tmp_path}: Is a directory"
    ]
    missing = _problems(tmp_path, {"URL": "https://x.example", "TokenFile": str(tmp_path / "nope")})
    empty = _problems(tmp_path, {"URL": "https://x.example", "TokenFile": str(tmp_path / "empty")})
    assert missing == [
        f"ArtifactServer.TokenFile: cannot read {tmp_path / 'nope'}: No such file or directory"
    ]
    assert empty == [f"ArtifactServer.TokenFile: {tmp_path / 'empty'} is empty"]


def test_it_defaults_timeout_and_retries(tmp_path: Path) -> None:
    assert _load(tmp_path, {"URL": "https://x.example", "Token": "t"}) == ArtifactServerConfig(
        "https://x.example", "t"
    )


def test_it_has_no_artifact_server_unless_configured(tmp_path: Path) -> None:
    assert load_config(tmp_path, None).artifact_server is None


def test_it_refuses_plain_http_to_another_host(tmp_path: Path) -> None:
    assert _problems(tmp_path, {"URL": "http://updates.example.com"})[0].startswith(
        "ArtifactServer.URL: must be an https:// URL"
    )


def test_it_reports_every_problem_of_the_section(tmp_path: Path) -> None:
    problems = _problems(tmp_path, {"Token": "a", "TokenFile": "b", "Retries": -1, "Timeout": 3})
    assert problems == [
        "ArtifactServer.URL: is required when ArtifactServer is set",
        "ArtifactServer.TokenFile: Token and TokenFile are exclusive",
        "ArtifactServer.Retries: must be an integer >= 0, got the number -1",
    ]
