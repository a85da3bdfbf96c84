"""The pytest plugin, used the way an interface maker would: in their own test suite (pytester)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interface_check.maker import Spec, make_artifact, make_interface

pytest_plugins = ["pytester"]


def test_a_makers_suite_passes_for_a_good_interface_and_fails_with_the_report_for_a_bad_one(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A maker's suite: its own process, no Django plugin, our package importable.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    good, good_dev = make_interface(tmp_path / "good", Spec())
    bad, bad_dev = make_interface(tmp_path / "bad", Spec(mutation="provides-both-version-keys"))
    artifact = make_artifact(tmp_path / "good", Spec())
    pytester.makeconftest('pytest_plugins = ["updates.engine.conformance.pytest_plugin"]')
    pytester.makepyfile(
        f"""
        def test_good_conforms(interface_check):
            report = interface_check({str(good)!r}, type="board", id="B1", args=[{str(good_dev)!r}],
                                     artifact={str(artifact)!r}, destructive=True)
            assert "P-RERUN-1" in {{r.rule for r in report.results}}

        def test_bad_conforms(interface_check):
            interface_check({str(bad)!r}, type="board", args=[{str(bad_dev)!r}])
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:django", "-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*interface-check failed:*", "*FAIL P-PROVIDES-2*rootfs-image.version*"])
