"""Issue 22, defect 2: a name that is not UTF-8 is made safe text where it enters; every page
that shows it renders."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from django.test import Client

from tests.integration.conftest import DemoSystem
from tests.security.conftest import demo_bundle
from updates.engine import yamlpos
from updates.engine.artifact.errors import HeaderError
from updates.engine.artifact.headers import load_json
from updates.engine.artifact.limits import Limits
from updates.models import Bundle

EVIL = b"artifacts/\xff\xfe\xe9vil.mender"


def _tar(members: dict[bytes, bytes], *, fmt: int = tarfile.GNU_FORMAT) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tar:
        for raw, data in members.items():
            info = tarfile.TarInfo(raw.decode("utf-8", "surrogateescape"))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    out.name = "evil.tar"
    return out


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_a_member_name_that_is_not_utf8_is_shown_readably(
    clients: dict[str, Client], web_demo: DemoSystem, fmt: int
) -> None:
    manifest = (web_demo.system / "manifest-v2.yaml").read_bytes()
    upload = _tar({b"manifest-v2.yaml": manifest, EVIL: b"not an artifact"}, fmt=fmt)
    answer = clients["operator"].post("/api/v1/bundles", {"file": upload})
    assert answer.status_code in (201, 422), answer.content
    bundle = Bundle.objects.get()
    assert bundle.status == "rejected"
    assert any(r"artifacts/\xff\xfe\xe9vil.mender" in p for p in bundle.problems), bundle.problems
    listing = clients["viewer"].get("/bundles/")
    page = clients["viewer"].get(f"/bundles/{bundle.pk}/")
    assert listing.status_code == 200 and page.status_code == 200
    assert r"artifacts/\xff\xfe\xe9vil.mender" in page.content.decode()
    assert clients["viewer"].get(f"/api/v1/bundles/{bundle.pk}").status_code == 200


def test_a_bundle_row_stored_with_lone_surrogates_still_renders(
    clients: dict[str, Client], web_demo: DemoSystem
) -> None:
    with open(demo_bundle(web_demo, 2), "rb") as fh:
        clients["operator"].post("/api/v1/bundles", {"file": fh})
    # As a row written before the fix holds it: JSON escapes of lone surrogates.
    bad = "artifacts/\udcff\udcfevil.mender: unsafe member name"
    # (only JSON columns can hold one: SQLite refuses a lone surrogate in a text column)
    Bundle.objects.update(
        status="rejected", problems=[bad], checks=[{"check": "x\ud800", "ok": False, "detail": "\udcff"}]
    )
    assert "\\udcff" in json.dumps(bad)
    bundle = Bundle.objects.get()
    for url in ("/bundles/", f"/bundles/{bundle.pk}/", f"/api/v1/bundles/{bundle.pk}", "/api/v1/bundles"):
        answer = clients["viewer"].get(url)
        assert answer.status_code == 200, url
    assert r"artifacts/\xff\xfevil.mender" in clients["viewer"].get(f"/bundles/{bundle.pk}/").content.decode()


def test_a_yaml_or_json_surrogate_escape_becomes_visible_text() -> None:
    got = load_json(b'{"name": "a\\ud800b", "k\\udcff": 1}', "header-info", Limits(), HeaderError)
    assert got == {"name": "a\\ud800b", "k\\xff": 1}
    doc = yamlpos.load(b'name: "x\\ud800"\n"\\udcff": 1\n')
    assert doc.mapping is not None
    assert doc.mapping["name"].value == "x\\ud800" and "\\xff" in doc.mapping
