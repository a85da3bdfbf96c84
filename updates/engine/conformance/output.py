"""A report as text (one line per check, then a summary), JSON, or JUnit XML for a maker's CI."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree as ET

from updates.engine.conformance.model import CheckResult, Report

FORMATS = ("text", "json", "junit")
_MARK = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "skip": "SKIP"}


def render(report: Report, fmt: str) -> str:
    return {"text": as_text, "json": as_json, "junit": as_junit}[fmt](report)


def summary(report: Report) -> str:
    counts = report.counts()
    mode = "destructive" if report.destructive else "read-only: queries only"
    verdict = "FAILED" if report.failed else "OK"
    parts = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    return f"{verdict}: {parts} — {report.subject.path} ({mode})"


def _time(result: CheckResult) -> str:
    return "" if result.seconds is None else f" [{result.seconds:.3f} s]"


def as_text(report: Report) -> str:
    lines = [
        f"{_MARK[r.status]} {r.rule:<14} {r.subject}: {r.seen}{_time(r)}"
        + ("" if r.status == "pass" else f"\n     rule: {r.text} ({r.doc})")
        for r in report.results
    ]
    return "\n".join([*lines, summary(report)]) + "\n"


def as_json(report: Report) -> str:
    subject = report.subject
    doc: dict[str, Any] = {
        "interface": str(subject.path),
        "component_type": subject.component_type,
        "component_id": subject.component_id,
        "args": list(subject.args),
        "destructive": report.destructive,
        "timeout": subject.timeout,
        "ok": not report.failed,
        "counts": report.counts(),
        "checks": [
            {
                "rule": r.rule,
                "subject": r.subject,
                "status": r.status,
                "seen": r.seen,
                "seconds": r.seconds,
                "text": r.text,
                "doc": r.doc,
            }
            for r in report.results
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def as_junit(report: Report) -> str:
    counts = report.counts()
    suite = ET.Element(
        "testsuite",
        name=f"interface-check {report.subject.interface}",
        tests=str(len(report.results)),
        failures=str(counts["fail"]),
        skipped=str(counts["skip"]),
        errors="0",
        time=f"{sum(r.seconds or 0.0 for r in report.results):.3f}",
    )
    for r in report.results:
        case = ET.SubElement(
            suite, "testcase", classname=r.rule, name=f"{r.subject}: {r.text}", time=f"{r.seconds or 0.0:.3f}"
        )
        if r.status == "fail":
            ET.SubElement(
                case, "failure", message=r.seen
            ).text = f"{r.seen}\nrule {r.rule}: {r.text} ({r.doc})"
        elif r.status == "skip":
            ET.SubElement(case, "skipped", message=r.seen)
        elif r.status == "warn":
            ET.SubElement(case, "system-out").text = f"warning: {r.seen}"
    suites = ET.Element("testsuites")
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
