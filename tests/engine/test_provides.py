"""Provides/Inventory/Identity parsing and the already-installed / depends rules of artifact selection."""

from __future__ import annotations

import pytest

from updates.engine.interface import ProtocolError
from updates.engine.provides import (
    ProvidesError,
    apply_provides,
    clear_matches,
    device_type_ok,
    interface_version_key,
    is_installed,
    parse_identity,
    parse_inventory,
    parse_provides,
    unmet_depends,
)

RTOS = {"rootfs-image.rtos-interface.version": "rtos-v1", "artifact_name": "rtos-v1"}
RTOS_V2 = {"rootfs-image.rtos-interface.version": "rtos-v2", "artifact_name": "rtos-v2"}
RTOS_CLEARS = ["rootfs-image.rtos-interface.*", "artifact_name"]

# --------------------------------------------------------------------------------------------------
# Parsing


def test_it_parses_provides_lines_ignoring_blank_lines_and_outer_spaces() -> None:
    stdout = "artifact_name=gateway-v1\n\n  rootfs-image.version=gateway-v1  \nnote=a=b c\n"
    assert parse_provides(stdout, source="gw") == {
        "artifact_name": "gateway-v1",
        "rootfs-image.version": "gateway-v1",
        "note": "a=b c",
    }


@pytest.mark.parametrize(
    ("stdout", "line", "words"),
    [
        ("a=1\na=2\n", 2, "duplicate key 'a'"),
        ("a=1\n\njust text\n", 3, "expected key=value"),
        ("device_type=rtos\n", 1, "device_type"),
        ("=value\n", 1, "invalid key"),
        ("my key=1\n", 1, "invalid key"),
    ],
)
def test_it_refuses_bad_provides_naming_source_and_line(stdout: str, line: int, words: str) -> None:
    with pytest.raises(ProvidesError) as caught:
        parse_provides(stdout, source="rtos-interface Provides")
    assert str(caught.value).startswith(f"rtos-interface Provides: line {line}: ")
    assert words in str(caught.value)
    assert isinstance(caught.value, ProtocolError)


def test_it_allows_device_type_for_seed_form_interfaces() -> None:
    assert (
        parse_provides("device_type=rtos\nversion=1\n", source="s", allow_device_type=True)["device_type"]
        == "rtos"
    )


@pytest.mark.parametrize(
    ("stdout", "ok"),
    [
        ("rootfs-image.version=1\n", True),
        ("rootfs-image.rtos-interface.version=1\n", True),
        ("rootfs-image.version=1\nrootfs-image.rtos-interface.version=1\n", False),
        ("artifact_name=x\n", False),
    ],
)
def test_it_requires_exactly_one_version_key_when_the_interface_is_known(stdout: str, ok: bool) -> None:
    if ok:
        parse_provides(stdout, source="s", interface="rtos-interface")
    else:
        with pytest.raises(ProvidesError, match="exactly one of"):
            parse_provides(stdout, source="s", interface="rtos-interface")
    assert interface_version_key("esp32") == "rootfs-image.esp32.version"


def test_it_collects_repeated_inventory_keys_into_lists() -> None:
    assert parse_inventory("a=1\nb=2\na=3\n\n") == {"a": ["1", "3"], "b": ["2"]}
    assert parse_inventory("") == {}


def test_it_refuses_inventory_lines_without_a_value() -> None:
    with pytest.raises(ProvidesError, match="line 2"):
        parse_inventory("a=1\noops\n")


def test_it_parses_an_identity() -> None:
    assert parse_identity("\nid=R123\n\n", source="rtos Identity") == "R123"
    assert parse_identity("id=52:54:00:1d:94:82", source="gw") == "52:54:00:1d:94:82"


@pytest.mark.parametrize("stdout", ["", "\n", "id=\n", "name=R1\n", "id=R1\nid=R2\n", "R1\n"])
def test_it_refuses_a_bad_identity_naming_the_source(stdout: str) -> None:
    with pytest.raises(ProvidesError, match=r"^rtos Identity: "):
        parse_identity(stdout, source="rtos Identity")


# --------------------------------------------------------------------------------------------------
# Clears and installed check


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("rootfs-image.rtos.*", "rootfs-image.rtos.version", True),
        ("rootfs-image.rtos.*", "rootfs-image.other.version", False),
        ("rootfs-image.*", "rootfs-image.a.b.c", True),
        ("*", "anything", True),
        ("artifact_name", "artifact_name", True),
        ("artifact_name", "artifact_name_x", False),
        ("a.b", "axb", False),
        ("*.version", "rootfs-image.version", True),
        ("data-*.x", "data-partition.x", True),
    ],
)
def test_it_matches_clears_patterns(pattern: str, key: str, matches: bool) -> None:
    assert clear_matches(pattern, key) is matches


def test_it_applies_provides_keeping_uncleared_keys() -> None:
    current = {**RTOS, "extra": "kept"}
    after = apply_provides(current, provides=RTOS_V2, clears=RTOS_CLEARS)
    assert after == {**RTOS_V2, "extra": "kept"}


def test_it_clears_everything_when_clears_is_none() -> None:
    assert apply_provides({**RTOS, "extra": "x"}, provides=RTOS_V2, clears=None) == RTOS_V2


def test_it_sees_the_same_artifact_as_installed() -> None:
    current = {**RTOS, "extra": "kept"}
    assert is_installed(current, provides=RTOS, clears=RTOS_CLEARS)
    assert not is_installed(current, provides=RTOS_V2, clears=RTOS_CLEARS)


def test_it_counts_keys_lost_by_clear_all_as_a_change() -> None:
    assert not is_installed({**RTOS, "extra": "x"}, provides=RTOS, clears=None)
    assert is_installed(dict(RTOS), provides=RTOS, clears=None)


def test_it_ignores_artifact_name_when_other_keys_decide() -> None:
    renamed = {**RTOS, "artifact_name": "rtos-v1-rebuilt"}
    assert is_installed(RTOS, provides=renamed, clears=RTOS_CLEARS)


def test_it_compares_artifact_name_when_it_is_the_only_key() -> None:
    assert is_installed({"artifact_name": "a"}, provides={"artifact_name": "a"}, clears=None)
    assert not is_installed({"artifact_name": "a"}, provides={"artifact_name": "b"}, clears=None)


def test_it_treats_an_artifact_adding_a_key_as_a_change() -> None:
    assert not is_installed(RTOS, provides={"new.key": "1"}, clears=[])


# --------------------------------------------------------------------------------------------------
# Depends and device types


def test_it_accepts_satisfied_depends() -> None:
    assert unmet_depends(RTOS, {"rootfs-image.rtos-interface.version": ["rtos-v0", "rtos-v1"]}) == []
    assert unmet_depends(RTOS, {}) == []


def test_it_explains_unmet_depends() -> None:
    reasons = unmet_depends(RTOS, {"rootfs-image.rtos-interface.version": ["rtos-v0"], "bootloader": ["2"]})
    assert len(reasons) == 2
    assert "'rtos-v1'" in reasons[0] and "rtos-v0" in reasons[0]
    assert reasons[1].startswith("bootloader:") and "does not provide" in reasons[1]


def test_it_never_matches_a_depends_value_as_a_substring() -> None:
    assert unmet_depends({"k": "v1"}, {"k": "v1"}) == []  # a bare string is one value ...
    assert unmet_depends({"k": "v"}, {"k": "v1"}) != []  # ... not a list of characters


def test_it_checks_device_type_depends_against_the_component_type_only() -> None:
    provided = {"device_type": "rtos", **RTOS}
    assert unmet_depends(provided, {"device_type": ["gateway"]}) == []  # left to device_type_ok
    assert unmet_depends(provided, {"device_type": ["rtos"]}, component_type="gateway") != []
    assert unmet_depends({}, {"device_type": ["rtos"]}, component_type="rtos") == []


def test_it_matches_device_types_exactly() -> None:
    assert device_type_ok("rtos", ["gateway", "rtos"])
    assert not device_type_ok("rtos", ["rtos-2"])
    assert not device_type_ok("rt", "rtos")
    assert not device_type_ok("rtos", [])
