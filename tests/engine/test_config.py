"""mender-orchestrator.conf: defaults, per-key merge with the fallback, and errors naming file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from updates.engine.config import CONF_NAME, OrchestratorConfig, load_config
from updates.engine.manifest import InputError, Problem


def dirs(tmp_path: Path, main: str | None = None, fallback: str | None = None) -> tuple[Path, Path]:
    conf, store = tmp_path / "etc", tmp_path / "var"
    for directory, text in ((conf, main), (store, fallback)):
        directory.mkdir()
        if text is not None:
            (directory / CONF_NAME).write_text(text)
    return conf, store


def refused(tmp_path: Path, main: str | None = None, fallback: str | None = None) -> list[Problem]:
    with pytest.raises(InputError) as caught:
        load_config(*dirs(tmp_path, main, fallback))
    return caught.value.problems


def test_it_uses_defaults_when_no_file_exists(tmp_path: Path) -> None:
    config = load_config(tmp_path / "nowhere", tmp_path / "neither")
    assert config == OrchestratorConfig(verify_keys=())
    assert (config.interface_timeout_seconds, config.log_level, config.artifacts_cache_max_size_bytes) == (
        14400,
        "info",
        0,
    )


def test_it_reads_every_documented_key(tmp_path: Path) -> None:
    main = {
        "ArtifactVerifyKeys": ["/etc/keys/a.pem", "/etc/keys/b.pem"],
        "InterfaceTimeoutSeconds": 60,
        "LogLevel": "debug",
        "TopologyComponents": "/data/components.yaml",
        "ArtifactsCache": {"Enabled": True, "Path": "/data/cache", "MaxSizeBytes": 1024},
        "HttpsClient": {"Certificate": "/c.pem", "Key": "pkcs11:token", "SSLEngine": "pkcs11"},
        "ManifestStore": "/data/manifests",
        "ServerCertificate": "/etc/ca.pem",
    }
    config = load_config(*dirs(tmp_path, json.dumps(main)))
    assert config.verify_keys == (Path("/etc/keys/a.pem"), Path("/etc/keys/b.pem"))
    assert (config.interface_timeout_seconds, config.log_level) == (60, "debug")
    assert config.topology_components == Path("/data/components.yaml")
    assert (config.artifacts_cache_enabled, config.artifacts_cache_path) == (True, Path("/data/cache"))
    assert config.artifacts_cache_max_size_bytes == 1024
    assert (config.manifest_store, config.server_certificate) == (
        Path("/data/manifests"),
        Path("/etc/ca.pem"),
    )
    assert config.raw == main


def test_it_accepts_a_single_verify_key(tmp_path: Path) -> None:
    config = load_config(*dirs(tmp_path, '{"ArtifactVerifyKey": "/k.pem"}'))
    assert config.verify_keys == (Path("/k.pem"),)


def test_it_merges_per_key_with_the_main_file_winning(tmp_path: Path) -> None:
    main = '{"LogLevel": "error"}'
    fallback = '{"LogLevel": "trace", "InterfaceTimeoutSeconds": 5}'
    config = load_config(*dirs(tmp_path, main, fallback))
    assert (config.log_level, config.interface_timeout_seconds) == ("error", 5)


def test_it_works_without_a_fallback_directory(tmp_path: Path) -> None:
    conf, _ = dirs(tmp_path, '{"LogLevel": "warning"}')
    assert load_config(conf, None).log_level == "warning"


def test_it_treats_a_blank_file_as_empty(tmp_path: Path) -> None:
    assert load_config(*dirs(tmp_path, "\n")).verify_keys == ()


def test_it_refuses_both_verify_key_forms_naming_both_files(tmp_path: Path) -> None:
    [problem] = refused(tmp_path, '{"ArtifactVerifyKeys": ["/a"]}', '{"ArtifactVerifyKey": "/b"}')
    assert problem.file == str(tmp_path / "etc" / CONF_NAME) and problem.line == 1
    assert str(tmp_path / "var" / CONF_NAME) in problem.message and "exclusive" in problem.message


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        ('{\n  "LogLevel": "info",\n  "InterfaceTimeoutSeconds": "60"\n}', "InterfaceTimeoutSeconds", 3),
        ('{\n  "InterfaceTimeoutSeconds": true\n}', "InterfaceTimeoutSeconds", 2),
        ('{\n  "InterfaceTimeoutSeconds": 0\n}', "InterfaceTimeoutSeconds", 2),
        ('{\n  "LogLevel": "verbose"\n}', "LogLevel", 2),
        ('{\n  "ArtifactVerifyKey": 3\n}', "ArtifactVerifyKey", 2),
        ('{\n  "ArtifactVerifyKeys": "/a.pem"\n}', "ArtifactVerifyKeys", 2),
        ('{\n  "ArtifactVerifyKeys": []\n}', "ArtifactVerifyKeys", 2),
        ('{\n  "ArtifactVerifyKeys": ["/a", ""]\n}', "ArtifactVerifyKeys[1]", 2),
        ('{\n  "ArtifactsCache": {\n    "MaxSizeBytes": -1\n  }\n}', "ArtifactsCache.MaxSizeBytes", 3),
        ('{\n  "ArtifactsCache": {\n    "Enabled": "yes"\n  }\n}', "ArtifactsCache.Enabled", 3),
        ('{\n  "ArtifactsCache": []\n}', "ArtifactsCache", 2),
        ('{\n  "HttpsClient": {"Key": 1}\n}', "HttpsClient.Key", 2),
        ('{\n  "TopologyComponents": null\n}', "TopologyComponents", None),
        ('{\n  "DeviceTypeFile": ""\n}', "DeviceTypeFile", 2),
        ('{\n  "LogLevel": "info",\n  "LogLevel": "debug"\n}', "LogLevel", 2),
        ('{\n  "LogLevel": "info",\n}', "(document)", 3),
        ("[1, 2]", "(document)", 1),
    ],
)
def test_it_refuses_bad_values_naming_file_line_and_key(
    tmp_path: Path, text: str, field: str, line: int | None
) -> None:
    if line is None:  # null means "not set": no problem at all
        assert load_config(*dirs(tmp_path, text)).topology_components is None
        return
    [problem] = refused(tmp_path, text)
    assert (problem.file, problem.field, problem.line) == (str(tmp_path / "etc" / CONF_NAME), field, line)


def test_it_warns_of_an_unknown_key_suggesting_the_one_probably_meant(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A key added by a newer Mender release must not stop the appliance; a typo is still shown.
    config = load_config(*dirs(tmp_path, '{\n  "LogLevel": "debug",\n  "ArtifactVerifyKeyz": ["/a"]\n}'))
    [warning] = config.warnings
    assert (warning.file, warning.line, warning.field) == (
        str(tmp_path / "etc" / CONF_NAME),
        3,
        "ArtifactVerifyKeyz",
    )
    assert warning.message == "unknown key, ignored; did you mean 'ArtifactVerifyKey'?"
    assert config.log_level == "debug" and config.verify_keys == ()
    assert [r.getMessage() for r in caplog.records] == [f"mender-orchestrator: warning: {warning}"]


def test_it_warns_of_unknown_keys_inside_known_sections(tmp_path: Path) -> None:
    config = load_config(*dirs(tmp_path, '{"ArtifactsCache": {"Enabled": true, "MaxSizeByte": 5}}'))
    assert [(w.field, w.message) for w in config.warnings] == [
        ("ArtifactsCache.MaxSizeByte", "unknown key, ignored; did you mean 'MaxSizeBytes'?")
    ]
    assert config.artifacts_cache_enabled is True


def test_a_known_key_of_the_wrong_type_stays_an_error_beside_an_unknown_one(tmp_path: Path) -> None:
    [problem] = refused(tmp_path, '{"InterfaceTimeoutSeconds": "ten", "FutureMenderKey": 1}')
    assert problem.field == "InterfaceTimeoutSeconds"


def test_it_takes_manifest_components_as_the_old_name_of_topology_components(tmp_path: Path) -> None:
    config = load_config(*dirs(tmp_path, '{"ManifestComponents": "/etc/components.yaml"}'))
    assert config.topology_components == Path("/etc/components.yaml")
    assert config.warnings == ()
    (tmp_path / "both").mkdir()
    [problem] = refused(tmp_path / "both", '{"ManifestComponents": "/a", "TopologyComponents": "/b"}')
    assert (problem.field, problem.message) == (
        "ManifestComponents",
        "is the old name of TopologyComponents: set only one of them",
    )


def test_it_reports_problems_of_both_files(tmp_path: Path) -> None:
    problems = refused(tmp_path, '{"LogLevel": 1}', '{"InterfaceTimeoutSeconds": -5, "x": 1}')
    assert sorted((Path(p.file).parent.name, p.field) for p in problems) == [
        ("etc", "LogLevel"),
        ("var", "InterfaceTimeoutSeconds"),
    ]


def test_it_refuses_an_unreadable_config(tmp_path: Path) -> None:
    conf, store = dirs(tmp_path)
    (conf / CONF_NAME).mkdir()
    with pytest.raises(InputError, match="cannot read"):
        load_config(conf, store)


def test_it_refuses_a_config_that_is_not_utf8(tmp_path: Path) -> None:
    conf, store = dirs(tmp_path)
    (conf / CONF_NAME).write_bytes(b'{\n"LogLevel": "\xff"}')
    [problem] = refused_dirs(conf, store)
    assert (problem.line, problem.field) == (2, "(document)")


def refused_dirs(conf: Path, store: Path) -> list[Problem]:
    with pytest.raises(InputError) as caught:
        load_config(conf, store)
    return caught.value.problems
