"""Property: random well-formed interfaces (generated scripts) pass; one mutation that breaks a
protocol rule is caught by exactly that rule's check."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.interface_check.maker import QUERY_MUTATIONS, STATE_MUTATIONS, Spec, make_artifact, make_interface
from updates.engine.conformance import Subject, check_interface

WORD = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,11}", fullmatch=True)
KEY = st.from_regex(r"[a-z][a-z0-9_.-]{0,11}", fullmatch=True).filter(
    lambda k: k not in ("device_type", "rootfs-image.version") and not k.startswith("rootfs-image.")
)


@st.composite
def specs(draw: st.DrawFn, *, rollback: bool = False) -> Spec:
    name = draw(st.sampled_from(["board", "fpga", "modem-2"]))
    answers = {
        "SupportsRollback": "Yes" if rollback else draw(st.sampled_from(["Yes", "No", ""])),
        "NeedsArtifactReboot": draw(st.sampled_from(["", "No", "Yes", "Automatic"])),
        "NeedsUnpackedArtifact": draw(st.sampled_from(["", "Yes", "No"])),
        "ProvidePayloadFileSizes": draw(st.sampled_from(["", "Yes", "No"])),
    }
    return Spec(
        name=name,
        component_id=draw(WORD),
        version=draw(WORD),
        extra_provides=tuple(draw(st.dictionaries(KEY, WORD, max_size=3)).items()),
        inventory=tuple(draw(st.lists(st.tuples(KEY, WORD), max_size=4))),
        answers=answers,
        streams=draw(st.booleans()),
    )


def _check(spec: Spec, *, destructive: bool) -> set[str]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path, device = make_interface(root, spec)
        artifact = make_artifact(root, spec) if destructive else None
        subject = Subject(
            path=path, component_type="board", component_id=spec.component_id, args=(str(device),)
        )
        report = check_interface(subject, artifact=artifact, destructive=destructive)
        return report.failed_rules()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), mutation=st.sampled_from([None, *sorted(QUERY_MUTATIONS)]))
def test_queries_of_random_interfaces_pass_and_each_mutation_is_caught(
    spec: Spec, mutation: str | None
) -> None:
    expected = set() if mutation is None else {QUERY_MUTATIONS[mutation]}
    assert _check(Spec(**{**vars(spec), "mutation": mutation}), destructive=False) == expected


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(rollback=True), mutation=st.sampled_from([None, *sorted(STATE_MUTATIONS)]))
def test_random_interfaces_pass_the_destructive_checks_and_each_mutation_is_caught(
    spec: Spec, mutation: str | None
) -> None:
    if mutation == "download-ignores-stream":
        spec = Spec(**{**vars(spec), "streams": True})
    expected = set() if mutation is None else {STATE_MUTATIONS[mutation]}
    assert _check(Spec(**{**vars(spec), "mutation": mutation}), destructive=True) == expected
