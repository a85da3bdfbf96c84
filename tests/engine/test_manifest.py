"""Manifest (both forms) and topology parsing, the split topology, and cross-file checks."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from updates.engine.manifest import (
    Component,
    DesiredState,
    InputError,
    Problem,
    load_desired_state,
    parse_manifest,
    parse_topology,
)

FIXTURES = Path(__file__).parent / "fixtures"
LINE_FORMAT = re.compile(r"^[^:]+:\d+: [^:]+: .+$")

MANIFEST = """\
api_version: "mender/v1"
kind: "manifest"
name: "system-core-v1"
system_types_compatible: ["system-core"]
component_types:
  gateway:
    artifact_path: gateway-v1.mender
    update_strategy:
      order: 10
  rtos:
    artifact_name: rtos-v1
    update_strategy:
      order: 20
"""

TOPOLOGY = """\
api_version: "mender/v1"
kind: "topology"
system_type: "system-core"
components:
  - component_type: gateway
    interface: rootfs-image
  - component_type: rtos
    interface: rtos-interface
    interface_args: ["1"]
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def system(tmp_path: Path, manifest: str = MANIFEST, topology: str = TOPOLOGY) -> DesiredState:
    write(tmp_path, "topology.yaml", topology)
    return load_desired_state(write(tmp_path, "manifest.yaml", manifest), topology_dir=tmp_path)


def refused(tmp_path: Path, manifest: str = MANIFEST, topology: str = TOPOLOGY) -> list[Problem]:
    with pytest.raises(InputError) as caught:
        system(tmp_path, manifest, topology)
    return caught.value.problems


def line_of(text: str, marker: str) -> int:
    return text[: text.index(marker)].count("\n") + 1


def fields(problems: list[Problem]) -> list[str]:
    return [p.field for p in problems]


# --------------------------------------------------------------------------------------------------
# Reference examples


def test_it_loads_the_ev_example_of_the_reference(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "ev_topology.yaml", tmp_path / "topology.yaml")
    state = load_desired_state(FIXTURES / "ev_manifest.yaml", topology_dir=tmp_path)
    assert state.topology.system_type == "electric-vehicle-2026"
    assert state.manifest.name == "electric-vehicle-software-v3.2.1"
    assert state.manifest.system_types_compatible == ("electric-vehicle-2026",)
    brake = state.manifest.targets["ecu_brake_controller"]
    assert brake.artifact_path == Path("/artifacts/brake-ecu-firmware-v1.8.3.mender")
    assert brake.artifact_name == "brake-ecu-firmware-v1.8.3"
    assert state.topology.components[2] == Component(
        "seat_heating", "i2c", ("--bus=1", "--address=0x48"), None
    )


def test_it_orders_the_ev_example_in_ascending_groups(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "ev_topology.yaml", tmp_path / "topology.yaml")
    state = load_desired_state(FIXTURES / "ev_manifest.yaml", topology_dir=tmp_path)
    groups = [(order, [c.component_type for c in members]) for order, members in state.order_groups()]
    assert groups == [
        (10, ["ecu_brake_controller"]),
        (20, ["seat_heating"]),
        (30, ["telematics_control_unit"]),
    ]


def test_it_loads_the_demo_topology_with_two_rtos_in_one_group(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "demo_topology.yaml", tmp_path / "topology.yaml")
    shutil.copy(FIXTURES / "demo_manifest_v1.yaml", tmp_path / "manifest.yaml")
    state = load_desired_state(tmp_path / "manifest.yaml", topology_dir=tmp_path)
    [(low, [gateway]), (high, [first, second])] = state.order_groups()
    assert (low, high) == (10, 20)
    assert gateway == Component("gateway", "rootfs-image", (), None)
    assert (first.interface_args, second.interface_args) == (("1",), ("2",))
    assert state.manifest.targets["rtos"].artifact_path == tmp_path / "rtos-v1.mender"
    assert state.argv_style == "current"


def test_it_loads_the_old_format_example_of_the_reference() -> None:
    manifest, components = parse_manifest(
        (FIXTURES / "seed_old_format.yaml").read_bytes(), path=FIXTURES / "x.yaml"
    )
    assert components == (
        Component("gateway", "rootfs-image", ("arg1",), "G13"),
        Component("rtos", "rtos", ("arg1",), "R456"),
    )
    assert manifest.targets["gateway"].artifact_path == FIXTURES / "gateway-v3.mender"


# --------------------------------------------------------------------------------------------------
# Seed form


def test_it_refuses_the_seed_example_verbatim_at_the_misindented_line() -> None:
    text = (FIXTURES / "seed_example_verbatim.yaml").read_text()
    expected = line_of(text, "\n - component_type: rtos") + 1
    with pytest.raises(InputError) as caught:
        parse_manifest(text.encode(), path=Path("/m/manifest.yaml"))
    [problem] = caught.value.problems
    assert (problem.file, problem.line) == ("/m/manifest.yaml", expected)
    assert "syntax error" in problem.message and "indentation" in problem.message


def test_it_parses_the_corrected_seed_example() -> None:
    text = (
        (FIXTURES / "seed_example_verbatim.yaml")
        .read_text()
        .replace("\n - component_type", "\n  - component_type")
    )
    manifest, components = parse_manifest(text.encode(), path=Path("/m/manifest.yaml"))
    assert (manifest.form, manifest.name, manifest.system_types_compatible) == ("seed", "system-core-v1", ())
    assert components is not None
    assert [(c.component_type, c.component_id, c.interface, c.interface_args) for c in components] == [
        ("gateway", "G13", "gateway", ("arg1",)),
        ("rtos", "R456", "rtos", ("arg1",)),
        ("rtos", "R998", "rtos", ("arg1",)),
    ]
    assert manifest.targets["rtos"].artifact_path == Path("/m/rtos-v1.mender")


def test_it_loads_a_seed_manifest_without_any_topology(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "seed_old_format.yaml", tmp_path / "m.yaml")
    state = load_desired_state(tmp_path / "m.yaml", topology_dir=tmp_path / "absent")
    assert state.topology.system_type is None
    assert state.topology.source == str(tmp_path / "m.yaml")
    assert state.argv_style == "seed"
    assert [(o, [c.component_id for c in cs]) for o, cs in state.order_groups()] == [
        (10, ["G13"]),
        (20, ["R456"]),
    ]


SEED = """\
api_version: mender/v1
kind: update_manifest
version: "v1"
component_types:
  rtos:
    artifact_name: rtos-v1
    update_strategy:
      order: 0
components:
  - component_type: rtos
    id: "R1"
  - component_type: rtos
    id: "R2"
    args: []
"""


def seed_problems(text: str) -> list[Problem]:
    with pytest.raises(InputError) as caught:
        parse_manifest(text.encode(), path=Path("/m/seed.yaml"))
    return caught.value.problems


@pytest.mark.parametrize("order", [0, 20, 500])
def test_it_accepts_any_non_negative_seed_order(order: int) -> None:
    manifest, _ = parse_manifest(SEED.replace("order: 0", f"order: {order}").encode(), path=Path("/m/s.yaml"))
    assert manifest.targets["rtos"].order == order


@pytest.mark.parametrize(
    ("change", "field", "marker"),
    [
        (("order: 0", "order: -1"), "component_types.rtos.update_strategy.order", "order:"),
        (("order: 0", "order: true"), "component_types.rtos.update_strategy.order", "order:"),
        (('id: "R2"', 'id: "R1"'), "components[1].id", 'id: "R1"\n    args'),
        (('id: "R2"', "id: 7"), "components[1].id", "id: 7"),
        (
            ('  - component_type: rtos\n    id: "R1"', '  - component_type: rtox\n    id: "R1"'),
            "components[0].component_type",
            "component_type: rtox",
        ),
        (('version: "v1"', 'name: "v1"'), "name", "name:"),
        (('version: "v1"\n', ""), "version", "api_version"),
        (("    args: []", "    args: [1]"), "components[1].args[0]", "args:"),
        (("    args: []", "    interface_args: []"), "components[1].interface_args", "interface_args"),
        (
            ("  rtos:\n", "  rtos:\n    update_interface: ../sh\n"),
            "component_types.rtos.update_interface",
            "update_interface",
        ),
    ],
)
def test_it_refuses_seed_rule_violations(change: tuple[str, str], field: str, marker: str) -> None:
    text = SEED.replace(*change)
    assert text != SEED
    problems = seed_problems(text)
    assert (field, line_of(text, marker)) in [(p.field, p.line) for p in problems]
    assert len(problems) <= 2  # a misnamed key is both unknown and, as the right name, missing


def test_it_names_the_first_use_of_a_duplicate_seed_id() -> None:
    [problem] = seed_problems(SEED.replace('id: "R2"', 'id: "R1"'))
    assert "components[0].id at line 11" in problem.message


def test_it_refuses_a_seed_manifest_without_components() -> None:
    text = SEED[: SEED.index("components:")]
    assert fields(seed_problems(text)) == ["components"]


def test_it_checks_the_defaulted_seed_interface_name_is_a_file_name() -> None:
    text = SEED.replace("rtos", "rtos board")
    problems = seed_problems(text)
    assert fields(problems) == ["components[0].component_type", "components[1].component_type"]
    assert "interface name" in problems[0].message


# --------------------------------------------------------------------------------------------------
# Current form: manifest rules


@pytest.mark.parametrize(
    ("change", "field", "marker"),
    [
        (('"mender/v1"', '"mender/v2"'), "api_version", "api_version"),
        (('kind: "manifest"', 'kind: "topology"'), "kind", "kind"),
        (('kind: "manifest"', "kind: 3"), "kind", "kind"),
        (('name: "system-core-v1"\n', ""), "name", "api_version"),
        (('name: "system-core-v1"', 'version: "system-core-v1"'), "version", 'version: "sys'),
        (('["system-core"]', '"system-core"'), "system_types_compatible", "system_types_compatible"),
        (('["system-core"]', "[]"), "system_types_compatible", "system_types_compatible"),
        (('["system-core"]', '["system-core", 7]'), "system_types_compatible[1]", "system_types_compatible"),
        (("order: 10", "order: 0"), "component_types.gateway.update_strategy.order", "order: 0"),
        (("order: 10", "order: 101"), "component_types.gateway.update_strategy.order", "order: 101"),
        (("order: 10", "order: yes"), "component_types.gateway.update_strategy.order", "order: yes"),
        (("order: 10", 'order: "10"'), "component_types.gateway.update_strategy.order", 'order: "10"'),
        (("order: 10", "order: 1.5"), "component_types.gateway.update_strategy.order", "order: 1.5"),
        (("order: 10", "orderr: 10"), "component_types.gateway.update_strategy.orderr", "orderr"),
        (("    artifact_path: gateway-v1.mender\n", ""), "component_types.gateway", "gateway:"),
        (
            ("    artifact_path: gateway-v1.mender\n", "    artifact_pth: g.mender\n"),
            "component_types.gateway.artifact_pth",
            "artifact_pth",
        ),
        (
            ("artifact_name: rtos-v1", "artifact_name: 1.0"),
            "component_types.rtos.artifact_name",
            "artifact_name",
        ),
        (
            ("artifact_name: rtos-v1", 'artifact_name: ""'),
            "component_types.rtos.artifact_name",
            "artifact_name",
        ),
        (("    update_strategy:\n      order: 20\n", ""), "component_types.rtos.update_strategy", "rtos:"),
        (
            ("    update_strategy:\n      order: 20\n", "    update_strategy: 20\n"),
            "component_types.rtos.update_strategy",
            "update_strategy: 20",
        ),
        (
            ("  rtos:\n", "  rtos:\n    update_interface: rtos-interface\n"),
            "component_types.rtos.update_interface",
            "update_interface",
        ),
        (("component_types:\n", "components: []\ncomponent_types:\n"), "components", "components:"),
        (
            (
                "  gateway:\n    artifact_path: gateway-v1.mender\n    update_strategy:\n      order: 10\n",
                "  gateway: x\n",
            ),
            "component_types.gateway",
            "gateway: x",
        ),
        (('name: "system-core-v1"', 'name: "a"\nname: "b"'), "name", 'name: "b"'),
    ],
)
def test_it_refuses_manifest_rule_violations(
    tmp_path: Path, change: tuple[str, str], field: str, marker: str
) -> None:
    text = MANIFEST.replace(*change)
    assert text != MANIFEST
    problems = refused(tmp_path, manifest=text)
    assert (field, line_of(text, marker)) in [(p.field, p.line) for p in problems]
    assert {p.file for p in problems} == {str(tmp_path / "manifest.yaml")}
    assert len(problems) <= 2  # a misnamed key is both unknown and, as the right name, missing


def test_it_suggests_the_key_that_was_probably_meant(tmp_path: Path) -> None:
    text = MANIFEST.replace("artifact_path", "artifact_pth")
    [problem] = [p for p in refused(tmp_path, manifest=text) if p.field.endswith("artifact_pth")]
    assert "did you mean 'artifact_path'" in problem.message


def test_it_explains_a_seed_key_in_a_current_manifest(tmp_path: Path) -> None:
    text = MANIFEST.replace('name: "system-core-v1"', 'version: "system-core-v1"')
    [problem] = [p for p in refused(tmp_path, manifest=text) if p.field == "version"]
    assert "'name'" in problem.message


def test_it_asks_to_quote_numbers_meant_as_strings(tmp_path: Path) -> None:
    [problem] = refused(tmp_path, manifest=MANIFEST.replace("artifact_name: rtos-v1", "artifact_name: 2.0"))
    assert "quotes" in problem.message


def test_it_reports_every_problem_of_a_manifest_in_line_order(tmp_path: Path) -> None:
    text = (
        MANIFEST.replace("order: 10", "order: 0")
        .replace('"mender/v1"', '"v2"')
        .replace("order: 20", "order: x")
    )
    problems = refused(tmp_path, manifest=text)
    assert [p.line for p in problems] == [1, 9, 13]


def test_it_resolves_relative_artifact_paths_against_the_manifest_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "usb" / "sub").mkdir(parents=True)
    write(tmp_path / "usb", "topology.yaml", TOPOLOGY)
    text = MANIFEST.replace("gateway-v1.mender", "../art/gw.mender").replace(
        "artifact_name: rtos-v1", "artifact_path: /abs/rtos.mender"
    )
    write(tmp_path / "usb" / "sub", "manifest.yaml", text)
    monkeypatch.chdir(tmp_path)
    state = load_desired_state(Path("usb/sub/manifest.yaml"), topology_dir=tmp_path / "usb")
    assert state.manifest.path == tmp_path / "usb" / "sub" / "manifest.yaml"
    assert state.manifest.targets["gateway"].artifact_path == tmp_path / "usb" / "art" / "gw.mender"
    assert state.manifest.targets["rtos"].artifact_path == Path("/abs/rtos.mender")


def test_it_keeps_the_exact_bytes_read(tmp_path: Path) -> None:
    text = MANIFEST + "# trailing comment\n"
    state = system(tmp_path, manifest=text)
    assert state.manifest.raw == text.encode()


def test_it_returns_no_components_for_the_current_form() -> None:
    manifest, components = parse_manifest(MANIFEST.encode(), path=Path("/m/manifest.yaml"))
    assert (manifest.form, components) == ("current", None)


def test_it_allows_reusing_blocks_with_anchors(tmp_path: Path) -> None:
    text = MANIFEST.replace(
        "    update_strategy:\n      order: 10", "    update_strategy: &first\n      order: 10"
    )
    text = text.replace("    update_strategy:\n      order: 20", "    update_strategy: *first")
    state = system(tmp_path, manifest=text)
    assert [order for order, _ in state.order_groups()] == [10]


# --------------------------------------------------------------------------------------------------
# Topology rules


@pytest.mark.parametrize(
    ("change", "field", "marker"),
    [
        (('kind: "topology"', 'kind: "manifest"'), "kind", "kind"),
        (('kind: "topology"\n', ""), "kind", "api_version"),
        (('system_type: "system-core"\n', ""), "system_type", "api_version"),
        (('system_type: "system-core"', "system_type: [a]"), "system_type", "system_type"),
        (
            ("    interface: rootfs-image\n", "    interface: ../../bin/sh\n"),
            "components[0].interface",
            "interface:",
        ),
        (
            ("    interface: rootfs-image\n", "    interface: .hidden\n"),
            "components[0].interface",
            "interface:",
        ),
        (("    interface: rootfs-image\n", "    interface: 5\n"), "components[0].interface", "interface:"),
        (('interface_args: ["1"]', 'interface_args: "1"'), "components[1].interface_args", "interface_args"),
        (
            ('interface_args: ["1"]', "interface_args: [1]"),
            "components[1].interface_args[0]",
            "interface_args",
        ),
        (('interface_args: ["1"]', "args: [a]"), "components[1].args", "args:"),
        (("    interface: rootfs-image\n", "    id: G13\n"), "components[0].id", "id:"),
        (
            ("  - component_type: gateway\n", "  - interface_args: []\n"),
            "components[0].component_type",
            "- interface_args",
        ),
        (("  - component_type: gateway\n    interface: rootfs-image\n", "  - 7\n"), "components[0]", "- 7"),
    ],
)
def test_it_refuses_topology_rule_violations(
    tmp_path: Path, change: tuple[str, str], field: str, marker: str
) -> None:
    text = TOPOLOGY.replace(*change)
    assert text != TOPOLOGY
    [problem] = [p for p in refused(tmp_path, topology=text) if p.file.endswith("topology.yaml")]
    assert (problem.field, problem.line) == (field, line_of(text, marker))


def test_it_defaults_the_interface_to_the_component_type() -> None:
    text = TOPOLOGY.replace("    interface: rootfs-image\n", "")
    topology = parse_topology(text.encode(), path=Path("/t/topology.yaml"))
    assert topology.components[0] == Component("gateway", "gateway", (), None)
    assert topology.source == "/t/topology.yaml"


def test_it_refuses_a_component_type_that_cannot_be_an_interface_name() -> None:
    text = TOPOLOGY.replace("    interface: rootfs-image\n", "").replace("gateway", "../gateway")
    with pytest.raises(InputError) as caught:
        parse_topology(text.encode(), path=Path("/t/topology.yaml"))
    assert fields(caught.value.problems) == ["components[0].component_type"]


def test_it_refuses_an_empty_component_list() -> None:
    text = TOPOLOGY[: TOPOLOGY.index("  - ")].replace("components:", "components: []")
    with pytest.raises(InputError) as caught:
        parse_topology(text.encode(), path=Path("/t/topology.yaml"))
    assert [(p.field, p.line) for p in caught.value.problems] == [("components", 4)]


# --------------------------------------------------------------------------------------------------
# Split topology


COMPONENTS = """\
components:
  - component_type: gateway
  - component_type: rtos
    interface_args: ["2"]
"""


def main_only() -> str:
    return TOPOLOGY[: TOPOLOGY.index("components:")]


def test_it_takes_components_from_a_separate_file(tmp_path: Path) -> None:
    write(tmp_path, "topology.yaml", main_only())
    extra = write(tmp_path, "components.yaml", COMPONENTS)
    manifest = write(tmp_path, "manifest.yaml", MANIFEST)
    state = load_desired_state(manifest, topology_dir=tmp_path, topology_components=extra)
    assert [c.interface for c in state.topology.components] == ["gateway", "rtos"]
    assert state.topology.source == f"{tmp_path / 'topology.yaml'}, {extra}"


def test_it_refuses_components_in_both_files_naming_both(tmp_path: Path) -> None:
    write(tmp_path, "topology.yaml", TOPOLOGY)
    extra = write(tmp_path, "components.yaml", COMPONENTS)
    with pytest.raises(InputError) as caught:
        load_desired_state(
            write(tmp_path, "manifest.yaml", MANIFEST), topology_dir=tmp_path, topology_components=extra
        )
    problems = caught.value.problems
    assert [(Path(p.file).name, p.field, p.line) for p in problems] == [
        ("topology.yaml", "components", 4),
        ("components.yaml", "components", 1),
    ]
    assert str(extra) in problems[0].message and str(tmp_path / "topology.yaml") in problems[1].message


def test_it_refuses_a_topology_without_components_anywhere(tmp_path: Path) -> None:
    [problem] = refused(tmp_path, topology=main_only())
    assert (problem.field, problem.line) == ("components", 1)
    assert "--topology-components" in problem.message and "TopologyComponents" in problem.message


def test_it_refuses_a_components_file_without_components(tmp_path: Path) -> None:
    write(tmp_path, "topology.yaml", main_only())
    extra = write(tmp_path, "components.yaml", "component: []\n")
    with pytest.raises(InputError) as caught:
        load_desired_state(
            write(tmp_path, "manifest.yaml", MANIFEST), topology_dir=tmp_path, topology_components=extra
        )
    assert [(Path(p.file).name, p.field) for p in caught.value.problems] == [
        ("components.yaml", "component"),
        ("components.yaml", "components"),
    ]


def test_it_reports_problems_inside_the_components_file_against_that_file() -> None:
    data = COMPONENTS.replace('["2"]', "[2]").encode()
    with pytest.raises(InputError) as caught:
        parse_topology(
            main_only().encode(),
            path=Path("/t/topology.yaml"),
            components_data=data,
            components_path=Path("/t/c.yaml"),
        )
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.field) == ("/t/c.yaml", 4, "components[1].interface_args[0]")


def test_it_refuses_a_missing_components_file(tmp_path: Path) -> None:
    write(tmp_path, "topology.yaml", main_only())
    with pytest.raises(InputError) as caught:
        load_desired_state(
            write(tmp_path, "manifest.yaml", MANIFEST),
            topology_dir=tmp_path,
            topology_components=tmp_path / "nope.yaml",
        )
    [problem] = caught.value.problems
    assert (problem.file, problem.field) == (str(tmp_path / "nope.yaml"), "(file)")


# --------------------------------------------------------------------------------------------------
# Manifest and topology together


def test_it_refuses_a_manifest_for_another_system_type(tmp_path: Path) -> None:
    [problem] = refused(tmp_path, topology=TOPOLOGY.replace('"system-core"', '"other"'))
    assert (Path(problem.file).name, problem.field, problem.line) == (
        "manifest.yaml",
        "system_types_compatible",
        4,
    )
    assert "'other'" in problem.message


def test_it_refuses_a_topology_type_missing_from_the_manifest_once(tmp_path: Path) -> None:
    topology = TOPOLOGY + '  - component_type: esp32\n  - component_type: esp32\n    interface_args: ["b"]\n'
    [problem] = refused(tmp_path, topology=topology)
    assert (Path(problem.file).name, problem.field, problem.line) == (
        "manifest.yaml",
        "component_types.esp32",
        5,
    )
    assert f"topology.yaml:{line_of(topology, 'esp32')}" in problem.message


def test_it_ignores_manifest_entries_for_types_not_in_the_topology(tmp_path: Path) -> None:
    manifest = MANIFEST + "  esp32:\n    artifact_name: e\n    update_strategy:\n      order: 5\n"
    state = system(tmp_path, manifest=manifest)
    assert [order for order, _ in state.order_groups()] == [10, 20]


def test_it_collects_problems_of_both_files_before_raising(tmp_path: Path) -> None:
    manifest = MANIFEST.replace("order: 20", "order: 200")
    topology = TOPOLOGY.replace("interface: rtos-interface", "interface: a/b").replace('"system-core"', '"x"')
    problems = refused(tmp_path, manifest=manifest, topology=topology)
    assert sorted((Path(p.file).name, p.field) for p in problems) == [
        ("manifest.yaml", "component_types.rtos.update_strategy.order"),
        ("manifest.yaml", "system_types_compatible"),
        ("topology.yaml", "components[1].interface"),
    ]


def test_it_refuses_a_missing_topology_file(tmp_path: Path) -> None:
    manifest = write(tmp_path, "manifest.yaml", MANIFEST)
    with pytest.raises(InputError) as caught:
        load_desired_state(manifest, topology_dir=tmp_path)
    [problem] = caught.value.problems
    assert (problem.file, problem.field) == (str(tmp_path / "topology.yaml"), "(file)")
    assert "No such file" in problem.message


def test_it_refuses_a_current_manifest_without_a_topology_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="topology"):
        load_desired_state(write(tmp_path, "manifest.yaml", MANIFEST), topology_dir=None)


def test_it_refuses_a_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_desired_state(tmp_path / "none.yaml", topology_dir=tmp_path)
    assert [(p.file, p.line) for p in caught.value.problems] == [(str(tmp_path / "none.yaml"), None)]


def test_it_refuses_a_topology_given_as_the_manifest(tmp_path: Path) -> None:
    [problem] = refused(tmp_path, manifest=TOPOLOGY)
    assert (problem.field, problem.line) == ("kind", 2)
    assert "this file is a topology" in problem.message


# --------------------------------------------------------------------------------------------------
# Error format


def test_it_formats_every_problem_as_file_line_field_message(tmp_path: Path) -> None:
    manifest = MANIFEST.replace("order: 10", "order: 0").replace("artifact_name", "artifact_nam")
    with pytest.raises(InputError) as caught:
        system(tmp_path, manifest=manifest, topology=TOPOLOGY.replace("rtos-interface", "rtos interface"))
    lines = str(caught.value).splitlines()
    assert len(lines) == len(caught.value.problems) >= 4
    assert all(LINE_FORMAT.match(line) for line in lines), lines
    assert all(p.line is not None and p.field and p.file for p in caught.value.problems)


def test_it_formats_a_problem_without_a_line() -> None:
    assert str(Problem("/a.yaml", None, "(file)", "cannot read")) == "/a.yaml: (file): cannot read"
    assert str(Problem("/a.yaml", 3, "kind", "bad")) == "/a.yaml:3: kind: bad"


def test_it_names_every_missing_artifact_file_with_the_other_problems(tmp_path: Path) -> None:
    text = MANIFEST.replace("artifact_name: rtos-v1", "artifact_path: rtos-v1.mender").replace(
        'name: "system-core-v1"', 'name: "system-core-v1"\nextra: 1'
    )
    write(tmp_path, "topology.yaml", TOPOLOGY)
    path = write(tmp_path, "manifest.yaml", text)
    with pytest.raises(InputError) as caught:
        load_desired_state(path, topology_dir=tmp_path, check_artifact_paths=True)
    assert [(p.line, p.field) for p in caught.value.problems] == [
        (4, "extra"),
        (8, "component_types.gateway.artifact_path"),
        (12, "component_types.rtos.artifact_path"),
    ]
    assert caught.value.problems[2].message == (
        f"{tmp_path / 'rtos-v1.mender'} does not exist (and there is no artifact_name to look it up by)"
    )
    (tmp_path / "gateway-v1.mender").touch()
    (tmp_path / "rtos-v1.mender").touch()
    state = load_desired_state(
        path.with_name("ok.yaml"),
        topology_dir=tmp_path,
        check_artifact_paths=True,
        manifest_data=MANIFEST.encode(),
    )
    assert state.manifest.name == "system-core-v1"  # with a name, a missing path is the sources' business
