"""The web UI's pages per role, through Django's test client: what each role sees and may do,
forms that show their errors next to the field, the live fragments, and the downloads."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.template import engines
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken
from devices.models import Component, System
from tests.integration.conftest import DemoSystem
from tests.web.conftest import PASSWORD, demo_bundle, deployment_record
from updates.actors import Actor
from updates.liveness import owner_token
from updates.models import ActiveManifests, Bundle, Deployment, JournalEntry
from updates.selectors import DeploymentRecord, PageComponent
from updates.tasknames import TASK_REFRESH
from updates.web import views
from updates.web.tables import last_deployment_html, system_boxes_html

pytestmark = pytest.mark.django_db

PAGES = ["/", "/bundles/", "/history/", "/audit/", "/audit/?format=csv", "/audit/?format=json"]


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.mark.parametrize("url", PAGES)
def test_it_sends_anonymous_users_to_the_login_page(clients: dict[str, Client], url: str) -> None:
    response = clients["anonymous"].get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
@pytest.mark.parametrize("url", PAGES)
def test_it_shows_every_page_to_every_role(clients: dict[str, Client], role: str, url: str) -> None:
    assert clients[role].get(url).status_code == 200


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("operator", 403), ("admin", 200)])
def test_it_shows_the_admin_page_to_admins_only(clients: dict[str, Client], role: str, status: int) -> None:
    assert clients[role].get("/manage/").status_code == status
    assert ('href="/manage/"' in _text(clients[role].get("/"))) is (status == 200)


WRITES = [
    "/system/refresh",
    "/bundles/upload",
    "/bundles/1/deploy",
    "/deployments/1/resume",
    "/deployments/1/rollback",
    "/deployments/1/approve",
    "/system/reconcile",
]


@pytest.mark.parametrize("url", WRITES)
def test_it_refuses_writes_to_viewers(clients: dict[str, Client], url: str) -> None:
    deployment_record("system-core-v2", "stopped")
    assert clients["viewer"].post(url, {"confirm": "on"}).status_code == 403
    assert clients["anonymous"].post(url).status_code == 302
    assert Deployment.objects.count() == 1


@pytest.mark.parametrize("url", ["/manage/users", "/manage/users/1/role"])
def test_it_refuses_user_management_to_operators(clients: dict[str, Client], url: str) -> None:
    response = clients["operator"].post(url, {"username": "eve", "password": PASSWORD, "role": "admin"})
    assert response.status_code == 403


def test_it_needs_the_csrf_token_on_every_form(clients: dict[str, Client]) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.login(username="operator", password=PASSWORD)
    assert strict.post("/system/refresh").status_code == 403
    page = _text(strict.get("/"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    assert strict.post("/system/refresh", {"csrfmiddlewaretoken": token[1]}).status_code == 302


def test_it_logs_in_and_out(clients: dict[str, Client]) -> None:
    client = Client()
    bad = client.post("/accounts/login/", {"username": "viewer", "password": "wrong"})
    assert bad.status_code == 200
    assert "Please enter a correct username and password" in _text(bad)
    good = client.post("/accounts/login/", {"username": "viewer", "password": PASSWORD})
    assert good.status_code == 302
    assert "Sign out" in _text(client.get("/"))
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_it_says_what_to_do_on_an_empty_system(clients: dict[str, Client]) -> None:
    page = _text(clients["operator"].get("/"))
    assert "No component known yet — press Refresh" in page
    assert "No bundle yet — upload one above" in _text(clients["operator"].get("/bundles/"))
    assert "No bundle yet — an operator can upload one" in _text(clients["viewer"].get("/bundles/"))
    assert "No deployment yet" in _text(clients["viewer"].get("/history/"))
    assert "No deployment in this period" in _text(clients["viewer"].get("/audit/"))


def test_it_draws_the_components_grouped_by_update_order(clients: dict[str, Client]) -> None:
    deployment = deployment_record("system-core-v2", "succeeded")
    ActiveManifests.objects.create(pk=1, active=deployment.manifest)
    System.objects.create(pk=1, system_type="system-core")
    for key, version in (("gateway.G13", "gateway-v2"), ("rtos.R998", "rtos-v2"), ("rtos.R456", "rtos-v1")):
        ctype, cid = key.split(".")
        Component.objects.create(
            key=key, component_type=ctype, component_id=cid, interface=ctype, version=version
        )
    page = _text(clients["viewer"].get("/"))
    assert re.search(r"Order 10.*G13.*gateway-v2.*Order 20.*R456.*rtos-v1.*R998.*rtos-v2", page)
    assert "system-core-v2" in page
    assert "Refresh</button>" not in page  # a viewer cannot ask the components
    assert "Refresh</button>" in _text(clients["operator"].get("/"))


def test_it_shows_the_deployment_in_progress_with_its_progress(clients: dict[str, Client]) -> None:
    deployment = deployment_record("system-core-v3", "running", running=True)
    deployment.position = {"progress": {"gateway.G13": dict.fromkeys(("entered", "downloaded"), True)}}
    deployment.save()
    page = _text(clients["viewer"].get("/"))
    assert f'href="/deployments/{deployment.pk}/"' in page
    assert 'aria-valuenow="13"' in page  # 2 of 15 milestones (3 components x 5)


def test_it_asks_a_worker_to_refresh_the_components(
    clients: dict[str, Client], queue: Path, django_capture_on_commit_callbacks: Any, worker_beat: None
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = clients["operator"].post("/system/refresh", follow=True)
    assert "A worker is asking every component for its versions" in _text(response)
    assert 'id="no-worker"' not in _text(response)
    assert [json.loads(m.read_text())["headers"]["task"] for m in queue.glob("*.msg")] == [TASK_REFRESH]


def test_it_says_a_refresh_waits_when_no_worker_runs(
    clients: dict[str, Client], queue: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        page = _text(clients["operator"].post("/system/refresh", follow=True))
    assert "Refresh queued, but no worker is running: it waits until one starts." in page
    assert "A worker is asking" not in page
    assert 'id="no-worker"' in page and "<code>celery -A worker worker</code>" in page
    assert len(list(queue.glob("*.msg"))) == 1  # queued all the same, for the first worker to start


def test_it_uploads_a_bundle_and_shows_its_plan(clients: dict[str, Client], web_demo: DemoSystem) -> None:
    with open(demo_bundle(web_demo, 2), "rb") as fh:
        response = clients["operator"].post("/bundles/upload", {"file": fh})
    bundle = Bundle.objects.get()
    assert bundle.status == "accepted", bundle.problems
    assert bundle.who == Actor("user", "operator")
    assert response["Location"] == f"/bundles/{bundle.pk}/"
    page = _text(clients["viewer"].get(response["Location"]))
    assert re.search(r"Order 10.*G13.*gateway-v1.*gateway-v2.*Order 20.*rtos-v1.*rtos-v2", page)
    carried = bundle.artifacts.first()
    assert carried is not None
    assert "gateway-v2.mender" in page and carried.artifact.sha256 in page
    assert "Deploy</button>" not in page  # viewer
    assert "Deploy</button>" in _text(clients["operator"].get(response["Location"]))


def test_it_greys_what_a_bundle_leaves_unchanged(clients: dict[str, Client], web_demo: DemoSystem) -> None:
    for device in ("G13", "R998", "R456"):
        ctype = "gateway" if device == "G13" else "rtos"
        (web_demo.device(device) / "version").write_text(f"{ctype}-v2\n")
    (web_demo.device("R456") / "version").write_text("rtos-v1\n")
    with open(demo_bundle(web_demo, 2), "rb") as fh:
        bundle_page = clients["operator"].post("/bundles/upload", {"file": fh}, follow=True)
    rows = re.findall(
        r'<tr class="(unchanged|)">\s*<td><span class="type">\w+</span> (\w+)', bundle_page.content.decode()
    )
    assert sorted(rows) == [("", "R456"), ("unchanged", "G13"), ("unchanged", "R998")]
    page = _text(bundle_page)
    assert "1 component to update: rtos.R456" in page and "0 expected reboots" in page
    assert "Cannot roll back" not in page


def test_it_marks_reboots_and_what_cannot_roll_back(clients: dict[str, Client], web_demo: DemoSystem) -> None:
    web_demo.answer("R998", "SupportsRollback", "No")
    with open(demo_bundle(web_demo, 2), "rb") as fh:
        page = _text(clients["operator"].post("/bundles/upload", {"file": fh}, follow=True))
    assert "3 components to update" in page
    assert "1 expected reboot: gateway.G13" in page
    assert "Cannot roll back: rtos.R998" in page
    assert re.search(r"R998.*cannot roll back.*R456", page)


def test_it_has_nothing_to_deploy_when_all_runs_already(
    clients: dict[str, Client], web_demo: DemoSystem
) -> None:
    for device in ("G13", "R998", "R456"):
        ctype = "gateway" if device == "G13" else "rtos"
        (web_demo.device(device) / "version").write_text(f"{ctype}-v2\n")
    with open(demo_bundle(web_demo, 2), "rb") as fh:
        page = _text(clients["operator"].post("/bundles/upload", {"file": fh}, follow=True))
    assert "Nothing to deploy — the system already runs every version of this bundle" in page
    assert "Deploy</button>" not in page


def test_it_lets_the_upload_script_post_to_the_api_with_the_session(
    clients: dict[str, Client], web_demo: DemoSystem
) -> None:
    page = _text(clients["operator"].get("/bundles/"))
    assert 'data-api="/api/v1/bundles"' in page
    with open(demo_bundle(web_demo, 2), "rb") as fh:
        response = clients["operator"].post("/api/v1/bundles", {"file": fh})
    assert response.status_code == 201
    assert response.json()["status"] == "accepted"
    assert clients["viewer"].post("/api/v1/bundles", {}).status_code == 403


def test_it_lists_a_rejected_bundle_with_every_reason(
    clients: dict[str, Client], web_demo: DemoSystem
) -> None:
    upload = io.BytesIO(b"kind: manifest\nname: [unclosed\n")
    upload.name = "broken.yaml"
    response = clients["operator"].post("/bundles/upload", {"file": upload})
    problems = Bundle.objects.get().problems
    assert response.status_code == 302 and problems
    page = _text(clients["viewer"].get("/bundles/"))
    assert "Rejected" in page
    for problem in problems:
        assert re.sub(r"\s+", " ", problem).replace("'", "&#x27;").replace('"', "&quot;")[:40] in page


def test_the_bundle_list_shows_each_row_escaped_with_its_link_size_and_uploader(
    clients: dict[str, Client],
) -> None:
    """The rows are drawn in Python (updates/web/tables.py): escaped as the template escaped."""
    bundle = Bundle.objects.create(
        status="rejected",
        filename="a<b>&'.tar",
        size=2048,
        problems=["bad <x> & 'y'"],
        actor=Actor("token", "al<i>/ci").as_json(),
    )
    page = _text(clients["viewer"].get("/bundles/"))
    link = f'<a href="/bundles/{bundle.pk}/">'
    assert f"{link}{bundle.pk}</a>" in page and f"{link}—</a>" in page  # no manifest name
    assert (
        'a&lt;b&gt;&amp;&#x27;.tar <span class="muted">2.0 KB</span>' in page
    )  # _text folds the no-break space
    assert '<span class="badge badge-rejected">Rejected</span>' in page
    assert "<li>bad &lt;x&gt; &amp; &#x27;y&#x27;</li>" in page
    assert "token al&lt;i&gt;/ci" in page and "<x>" not in page and "<b>" not in page
    created = timezone.localtime(Bundle.objects.get().created_at)
    assert f'<time datetime="{created.isoformat()}">{created:%Y-%m-%d %H:%M}</time>' in page


# The System page's component boxes as its template drew them before they were drawn in Python
# (updates/web/tables.py): the Python must write exactly this, escaped the same way.
_BOXES_TEMPLATE = """\
    {% for order, components in boxes %}
    <div class="order-group">
      <h3>{% if order is not None %}Order {{ order }}{% else %}Not in the active manifest{% endif %}</h3>
      <ul class="boxes">
        {% for c in components %}
        <li class="box{% if c.uncommitted %} uncommitted{% endif %}" data-key="{{ c.key }}">
          <p class="box-title"><span class="type">{{ c.component_type }}</span> <strong>{{ c.component_id }}</strong></p>
          <dl>
            <dt>Version</dt><dd class="version">{{ c.running|default:"unknown" }}</dd>
            {% if c.uncommitted %}<dd class="note uncommitted warn">new, not committed <span class="muted">(committed: {{ c.version|default:"unknown" }})</span></dd>{% endif %}
            {% if c.drifted %}<dd class="note drifted warn">changed since the last deployment</dd>{% endif %}
            <dt>Interface</dt><dd>{{ c.interface }}</dd>
            <dt>Last seen</dt><dd>{% if c.last_seen %}<time datetime="{{ c.last_seen|date:'c' }}">{{ c.last_seen|date:"Y-m-d H:i:s" }}</time>{% else %}never{% endif %}</dd>
          </dl>
        </li>
        {% endfor %}
      </ul>
    </div>
    {% endfor %}"""


def _page_box(key: str, **given: Any) -> PageComponent:
    ctype, _, cid = key.partition(".")
    box: PageComponent = {
        "key": key,
        "component_type": ctype,
        "component_id": cid,
        "interface": ctype,
        "interface_args": [],
        "provides": {},
        "version": "v1",
        "last_seen": None,
        "running": "v1",
        "uncommitted": False,
        "drifted": False,
    }
    return cast(PageComponent, {**box, **given})


def test_the_system_boxes_drawn_in_python_are_what_the_template_drew() -> None:
    seen = datetime(2026, 3, 29, 0, 59, 58, 123456, tzinfo=UTC)  # Berlin's clocks change at 01:00 UTC
    boxes: list[tuple[int | None, list[PageComponent]]] = [
        (10, [_page_box("gw.<G&1>", last_seen=seen, interface="ssh'\"x", running="")]),
        (
            20,
            [
                _page_box("rtos.R'1", running="v2 <new>", version="", uncommitted=True, drifted=True),
                _page_box('rtos.R"2', running="v&2", version="a<b", uncommitted=True),
            ],
        ),
        (None, [_page_box("x.<script>alert(1)</script>", drifted=True, last_seen=seen)]),
    ]
    template = engines["django"].from_string(_BOXES_TEMPLATE)
    for zone in ("UTC", "Europe/Berlin"):
        with timezone.override(zone):
            old = template.render({"boxes": boxes})
            assert "    " + system_boxes_html(boxes) == old  # the page keeps the indent before it
    assert "<script>" not in old and "&lt;G&amp;1&gt;" in old and "Not in the active manifest" in old
    assert "    " + system_boxes_html([]) == template.render({"boxes": []})


# The System page's "Last deployment" card as its template drew it (now updates/web/tables.py).
_LAST_TEMPLATE = """{% with last=status.last %}{% if last %}
<section class="card lastrun" aria-labelledby="last-h" id="last-deployment">
  <h2 id="last-h">Last deployment</h2>
  <p><a href="{% url 'deployment' last.id %}">Deployment {{ last.id }}</a> of <strong>{{ last.manifest }}</strong> —
    <span class="badge badge-{{ last.status }}">{{ last.status|status_label }}</span>{% if last.finished_at %} <span class="muted">ended <time datetime="{{ last.finished_at|date:'c' }}">{{ last.finished_at|date:"Y-m-d H:i" }}</time></span>{% endif %}</p>
  {% if last.reason and last.status != "succeeded" %}<p class="reason reason-{{ last.status }}">{{ last.reason }}</p>{% endif %}
  {% if last.outcomes %}<ul class="ended">{% for o in last.outcomes %}<li><strong>{{ o.key }}</strong>: {{ o|outcome_text }}</li>{% endfor %}</ul>{% endif %}
</section>
{% endif %}{% endwith %}"""


def test_the_last_deployment_drawn_in_python_is_what_the_template_drew() -> None:
    ended = datetime(2026, 10, 25, 0, 30, 5, 42, tzinfo=UTC)
    outcome = {"from": "v<1>", "to": "v&2", "version": "v<1>", "uncommitted": False, "failed_in": None}
    failed = {**outcome, "key": "gw.<G>", "outcome": "failed in ArtifactInstall, rolled back"}
    records = [
        {
            "id": 7,
            "manifest": "sys <v2> & 'x'",
            "status": "rolled_back",
            "finished_at": ended,
            "reason": 'failed: "<boom>" & more',
            "outcomes": [failed, {**outcome, "key": "r'1", "outcome": "installed", "failed_in": "Download"}],
        },
        {
            "id": 8,
            "manifest": "m",
            "status": "succeeded",
            "finished_at": None,
            "reason": "ok",
            "outcomes": [],
        },
        {
            "id": 9,
            "manifest": "m",
            "status": "inconsistent",
            "finished_at": ended,
            "reason": "",
            "outcomes": [],
        },
    ]
    template = engines["django"].from_string(_LAST_TEMPLATE)
    for zone in ("UTC", "Europe/Berlin"):
        with timezone.override(zone):
            for record in records:
                old = template.render({"status": {"last": record}})
                assert last_deployment_html(cast(DeploymentRecord, record)) == old
    tricky = str(last_deployment_html(cast(DeploymentRecord, records[0])))
    assert "&quot;&lt;boom&gt;&quot; &amp; more" in tricky and "<strong>gw.&lt;G&gt;</strong>" in tricky
    assert template.render({"status": {"last": None}}) == ""  # and the view passes "" for no last


def test_it_refuses_an_upload_over_the_limit_next_to_the_field(
    clients: dict[str, Client], settings: Any
) -> None:
    settings.UPLOAD_MAX_BYTES = 100
    upload = io.BytesIO(b"x" * 1000)
    upload.name = "big.tar"
    response = clients["operator"].post("/bundles/upload", {"file": upload})
    assert response.status_code == 413
    assert re.search(
        r'class="field invalid">.*Not uploaded: upload of \d+\+ bytes exceeds the limit of 100 bytes',
        _text(response),
    )
    assert Bundle.objects.count() == 0


def test_it_asks_for_a_file(clients: dict[str, Client]) -> None:
    response = clients["operator"].post("/bundles/upload", {})
    assert response.status_code == 400
    assert "This field is required." in _text(response)


def test_it_deploys_a_bundle_only_once_confirmed(clients: dict[str, Client], web_demo: DemoSystem) -> None:
    with open(demo_bundle(web_demo, 2), "rb") as fh:
        clients["operator"].post("/bundles/upload", {"file": fh})
    bundle = Bundle.objects.get()
    unconfirmed = clients["operator"].post(f"/bundles/{bundle.pk}/deploy", {})
    assert unconfirmed.status_code == 400
    assert re.search(r'class="field check invalid">.*Tick the box to confirm', _text(unconfirmed))
    assert not Deployment.objects.exists()
    response = clients["operator"].post(f"/bundles/{bundle.pk}/deploy", {"confirm": "on"})
    deployment = Deployment.objects.get()
    assert response["Location"] == f"/deployments/{deployment.pk}/"
    assert (deployment.status, deployment.who) == ("queued", Actor("user", "operator"))
    busy = clients["operator"].post(f"/bundles/{bundle.pk}/deploy", {"confirm": "on"}, follow=True)
    assert "Not started:" in _text(busy) and Deployment.objects.count() == 1


def test_it_draws_the_timeline_with_a_block_per_state(clients: dict[str, Client]) -> None:
    deployment = deployment_record("system-core-v3", "rolled_back", failed="rtos.R456")
    page = _text(clients["viewer"].get(f"/deployments/{deployment.pk}/"))
    assert re.search(r"Order 10.*gateway.G13.*Order 20.*rtos.R998.*rtos.R456", page)
    assert len(re.findall(r'data-status="done"', page)) == 8
    assert len(re.findall(r'data-status="failed"', page)) == 1
    assert len(re.findall(r'data-status="rollback"', page)) == 3
    assert 'data-events="/api/v1/deployments/' in page


def test_it_serves_the_timeline_fragment_to_htmx(clients: dict[str, Client]) -> None:
    deployment = deployment_record("system-core-v2", "running", running=True)
    fragment = _text(clients["viewer"].get(f"/deployments/{deployment.pk}/", HTTP_HX_REQUEST="true"))
    assert "<html" not in fragment
    assert 'data-live="1"' in fragment
    assert len(re.findall(r'data-status="running"', fragment)) == 3


def test_it_opens_a_step_with_its_command_exit_code_and_output(clients: dict[str, Client]) -> None:
    deployment = deployment_record("system-core-v3", "rolled_back", failed="rtos.R456")
    step = deployment.steps.get(component="rtos.R456", state="ArtifactCommit")
    page = _text(clients["viewer"].get(f"/deployments/{deployment.pk}/steps/{step.pk}/"))
    assert "rtos ArtifactCommit" in page and "Exit code</dt><dd>1" in page
    assert "ArtifactCommit output" in page
    assert clients["viewer"].get(f"/deployments/{deployment.pk + 1}/steps/{step.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("status", "shown"), [("stopped", True), ("running", True), ("succeeded", False), ("queued", False)]
)
def test_it_offers_resume_and_rollback_where_they_apply(
    clients: dict[str, Client], status: str, shown: bool
) -> None:
    deployment = deployment_record("system-core-v2", status)
    assert ("Roll back</button>" in _text(clients["operator"].get(f"/deployments/{deployment.pk}/"))) is shown
    assert "Roll back</button>" not in _text(clients["viewer"].get(f"/deployments/{deployment.pk}/"))


def test_it_offers_no_resume_while_a_live_runner_has_the_deployment(clients: dict[str, Client]) -> None:
    deployment = deployment_record("system-core-v2", "running", running=True)
    Deployment.objects.filter(pk=deployment.pk).update(owner=owner_token())  # this process: alive
    assert "Roll back</button>" not in _text(clients["operator"].get(f"/deployments/{deployment.pk}/"))
    refused = clients["operator"].post(f"/deployments/{deployment.pk}/rollback", follow=True)
    assert f"Cannot roll back: deployment {deployment.pk} is running; a worker has it" in _text(refused)


def test_it_asks_a_worker_to_roll_back_a_stopped_deployment(
    clients: dict[str, Client], settings: Any, worker_beat: None
) -> None:
    deployment = deployment_record("system-core-v2", "stopped")
    response = clients["operator"].post(f"/deployments/{deployment.pk}/rollback", follow=True)
    assert f"A worker will roll back deployment {deployment.pk}" in _text(response)
    finished = deployment_record("system-core-v1", "succeeded")
    response = clients["operator"].post(f"/deployments/{finished.pk}/resume", follow=True)
    assert f"Cannot resume: deployment {finished.pk} is not in progress" in _text(response)


def test_it_filters_and_pages_the_history(clients: dict[str, Client]) -> None:
    for i in range(25):
        deployment_record(f"system-core-v{i}", "succeeded" if i % 2 else "rolled_back", days_ago=i)
    first = _text(clients["viewer"].get("/history/"))
    assert "Page 1 of 2 (25 deployments)" in first and 'rel="next"' in first
    assert 'href="/deployments/6/"' in first and 'href="/deployments/5/"' not in first
    rolled = _text(clients["viewer"].get("/history/?status=rolled_back&page=2"))
    assert "Page 1 of 1 (13 deployments)" in rolled  # an out-of-range page shows the last one
    named = _text(clients["viewer"].get("/history/?manifest=system-core-v13"))
    assert "(1 deployment)" in named and "system-core-v11 → system-core-v13" in named


def test_the_older_link_pages_by_keyset_and_a_redrawn_chart_counts_the_new_deployment(
    clients: dict[str, Client],
) -> None:
    made = [deployment_record(f"system-core-v{i}", "succeeded", days_ago=i) for i in range(45)]
    ids = sorted((d.pk for d in made), reverse=True)
    first = _text(clients["viewer"].get("/history/"))
    older = re.search(r'href="\?(after=\d+&amp;page=2)" rel="next"', first)
    assert older is not None and older[1] == f"after={ids[19]}&amp;page=2"
    second = _text(clients["viewer"].get(f"/history/?{older[1].replace('&amp;', '&')}"))
    assert "Page 2 of 3 (45 deployments)" in second
    shown = [int(n) for n in re.findall(r'href="/deployments/(\d+)/"', second)]
    assert shown == ids[20:40]  # the same rows as ?page=2
    assert shown == [
        int(n)
        for n in re.findall(r'href="/deployments/(\d+)/"', _text(clients["viewer"].get("/history/?page=2")))
    ]
    past = _text(clients["viewer"].get(f"/history/?after={ids[-1]}&page=4"))
    assert "Page 3 of 3 (45 deployments)" in past  # nothing older: the last page
    # The chart is kept between visits and drawn again once a deployment is added.
    before = re.findall(r'class="bar-succeeded"><title>(\d+) ', _text(clients["viewer"].get("/history/")))
    deployment_record("system-core-v99", "succeeded")
    after = re.findall(r'class="bar-succeeded"><title>(\d+) ', _text(clients["viewer"].get("/history/")))
    assert sum(map(int, after)) == sum(map(int, before)) + 1


def test_it_says_when_a_filter_is_wrong(clients: dict[str, Client]) -> None:
    page = _text(clients["viewer"].get("/history/?since=2026-05-02&until=2026-05-01"))
    assert re.search(r'class="field invalid">\s*<label for="id_until">.*before its start', page)


def test_it_charts_deployments_per_week_by_outcome(clients: dict[str, Client]) -> None:
    deployment_record("a", "succeeded")
    deployment_record("b", "succeeded")
    deployment_record("c", "rolled_back")
    deployment_record("d", "succeeded", days_ago=21)
    svg = re.search(r"<svg.*</svg>", _text(clients["viewer"].get("/history/")))
    assert svg is not None
    titles = re.findall(r'class="bar-(\w+)"><title>(\d+) ', svg[0])
    assert sorted(titles) == [("rolled_back", "1"), ("succeeded", "1"), ("succeeded", "2")]


def test_it_downloads_the_audit_rows_as_csv_and_json(clients: dict[str, Client]) -> None:
    deployment_record("system-core-v2", "succeeded", by="operator", days_ago=10)
    deployment_record("system-core-v3", "rolled_back", by="operator", failed="rtos.R456")
    deployment_record("system-core-v4", "running", running=True)
    response = clients["viewer"].get("/audit/?format=csv")
    assert response["Content-Disposition"] == 'attachment; filename="audit.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    firsts = [r for r in rows if r["component"] == "gateway.G13"]  # one row per component
    assert [(r["manifest_from"], r["manifest_to"], r["outcome"], r["actor"]) for r in firsts] == [
        ("", "system-core-v2", "succeeded", "user operator"),
        ("system-core-v2", "system-core-v3", "rolled_back", "user operator"),
        ("system-core-v2", "system-core-v4", "in progress", "cli cli"),
    ]
    assert [(r["version_before"], r["version_after"]) for r in firsts[:2]] == [
        ("gateway-v1", "gateway-v2"),
        ("gateway-v1", "gateway-v1"),
    ]
    api = clients["viewer"].get("/api/v1/audit?format=csv")
    assert api.content == response.content  # the same rows as the API's download
    # The period is the journal's: when each deployment.created entry was appended (today here).
    today = json.loads(clients["viewer"].get("/audit/?format=json&since=" + _days_ago(0)).content)
    assert [d["manifest_to"]["name"] for d in today] == ["system-core-v2", "system-core-v3", "system-core-v4"]
    assert json.loads(clients["viewer"].get("/audit/?format=json&since=" + _days_ago(-1)).content) == []


def _days_ago(n: int) -> str:
    return str((timezone.now() - timedelta(days=n)).date().isoformat())


def test_the_audit_page_prints_the_newest_deployments_and_downloads_them_all(
    clients: dict[str, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Years of history: the page must not read the whole journal, the downloads keep everything.
    monkeypatch.setattr(views, "AUDIT_PAGE_DEPLOYMENTS", 2)
    for name in ("system-core-v2", "system-core-v3", "system-core-v4"):
        deployment_record(name, "succeeded")
    page = _text(clients["viewer"].get("/audit/"))
    shown = re.findall(
        r'<section class="card audit-entry" aria-labelledby="d\d+">\s*<h2[^>]*>Deployment \d+: [^<]*→ ([\w-]+)',
        page,
    )
    assert shown == ["system-core-v3", "system-core-v4"]
    assert "Showing the newest 2 deployments of this period" in page
    every = json.loads(clients["viewer"].get("/audit/?format=json").content)
    assert [d["manifest_to"]["name"] for d in every] == ["system-core-v2", "system-core-v3", "system-core-v4"]
    monkeypatch.setattr(views, "AUDIT_PAGE_DEPLOYMENTS", 3)
    assert "Showing the newest" not in _text(clients["viewer"].get("/audit/"))


def test_it_prints_one_section_per_deployment_with_every_step(clients: dict[str, Client]) -> None:
    deployment_record("system-core-v2", "succeeded")
    deployment_record("system-core-v3", "rolled_back", failed="rtos.R456")
    page = _text(clients["viewer"].get("/audit/"))
    assert len(re.findall(r'<section class="card audit-entry"', page)) == 2
    assert len(re.findall(r"<tr><td>\d\d:\d\d:\d\d</td>", page)) == 9 + 12
    assert "format=csv" in page and "format=json" in page


def test_it_lets_an_admin_create_users_and_set_roles(clients: dict[str, Client]) -> None:
    admin = clients["admin"]
    short = admin.post("/manage/users", {"username": "eve", "password": "short", "role": "operator"})
    assert short.status_code == 400
    assert re.search(r'class="field invalid">\s*<label for="id_password">', _text(short))
    assert (
        admin.post("/manage/users", {"username": "eve", "password": PASSWORD, "role": "viewer"}).status_code
        == 302
    )
    eve = Client()
    assert eve.login(username="eve", password=PASSWORD)
    assert eve.post("/system/refresh").status_code == 403
    eve_id = User.objects.get(username="eve").pk
    admin.post(f"/manage/users/{eve_id}/role", {"role": "operator"})
    assert eve.post("/system/refresh").status_code == 302
    own = User.objects.get(username="admin").pk
    refused = admin.post(f"/manage/users/{own}/role", {"role": "viewer"}, follow=True)
    assert "You cannot change your own role" in _text(refused)


def test_it_shows_the_trusted_artifact_keys(clients: dict[str, Client], web_demo: DemoSystem) -> None:
    assert "No key configured" in _text(clients["admin"].get("/manage/"))
    key = web_demo.root / "conf" / "missing.pem"
    (web_demo.root / "conf" / "mender-orchestrator.conf").write_text(
        json.dumps({"ArtifactVerifyKey": str(key)})
    )
    page = _text(clients["admin"].get("/manage/"))
    assert str(key) in page


def test_it_serves_static_files_with_cache_headers(client: Client) -> None:
    response = client.get("/static/vendor/htmx/htmx-2.0.11.min.js")
    assert response.status_code == 200
    assert "max-age" in response["Cache-Control"]


def test_it_serves_collected_static_files_under_hashed_names_forever(
    clients: dict[str, Client], settings: Any, tmp_path: Path
) -> None:
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    page = _text(Client().get("/accounts/login/"))
    script = re.search(r'src="(/static/vendor/htmx/htmx-2\.0\.11\.min\.[0-9a-f]{12}\.js)"', page)
    assert script is not None
    response = Client().get(script[1], HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Cache-Control"] == "max-age=315360000, public, immutable"
    assert response["Content-Encoding"] == "gzip"


def test_it_creates_a_token_shows_it_once_and_revokes_it(clients: dict[str, Client], settings: Any) -> None:
    page = _text(clients["operator"].post("/account/tokens/new", {"name": "ci", "role": "operator"}))
    secret = re.search(r'<pre class="code" id="new-token">(orch_[^<]+)</pre>', page)
    assert secret is not None
    api = Client().get("/api/v1/system", HTTP_AUTHORIZATION=f"Bearer {secret[1]}")
    assert api.status_code == 200
    assert secret[1] not in _text(clients["operator"].get("/account/tokens/"))  # shown once
    token = ApiToken.objects.get(name="ci")
    assert clients["viewer"].post(f"/account/tokens/{token.pk}/revoke").status_code == 403  # not theirs
    clients["operator"].post(f"/account/tokens/{token.pk}/revoke")
    assert Client().get("/api/v1/system", HTTP_AUTHORIZATION=f"Bearer {secret[1]}").status_code == 401


def test_it_refuses_a_token_above_the_users_role(clients: dict[str, Client]) -> None:
    response = clients["viewer"].post("/account/tokens/new", {"name": "ci", "role": "admin"})
    assert response.status_code == 400
    assert re.search(
        r'class="field invalid">\s*<label for="id_role">.*not one of the available choices', _text(response)
    )
    assert not ApiToken.objects.exists()


def test_it_lets_an_admin_rotate_the_webhook_secret_and_shows_it_once(
    clients: dict[str, Client], settings: Any, tmp_path: Path
) -> None:
    settings.DATASTORE_DIR = tmp_path
    admin = clients["admin"]
    assert "No secret yet" in _text(admin.get("/manage/"))
    assert clients["operator"].post("/manage/hook-secret").status_code == 403
    assert not (tmp_path / "hook-secret").exists()

    answer = admin.post("/manage/hook-secret")
    shown = re.search(r'id="new-secret">([0-9a-f]+)<', _text(answer))
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store" and shown
    stored = tmp_path / "hook-secret"
    assert stored.read_text().strip() == shown.group(1) and stored.stat().st_mode & 0o777 == 0o600
    again = _text(admin.get("/manage/"))
    assert "A secret is set" in again and shown.group(1) not in again
    entry = JournalEntry.objects.filter(kind="hook_secret.rotated").get()
    assert entry.actor is not None and (entry.actor["kind"], entry.actor["name"]) == ("user", "admin")


def test_it_shows_the_declared_system_version_or_that_it_is_outside_them(
    clients: dict[str, Client], settings: Any, tmp_path: Path
) -> None:
    settings.TOPOLOGY_DIR = tmp_path
    (tmp_path / "constraints.yaml").write_text(
        "api_version: mender/v1\nkind: constraints\nend_states:\n"
        '  - system_version: "v.2"\n    versions: {gateway: gateway-v2, rtos: "rtos-v2*"}\n'
    )
    for key, version in (("gateway.G13", "gateway-v2"), ("rtos.R456", "rtos-v1")):
        ctype, cid = key.split(".")
        Component.objects.create(
            key=key, component_type=ctype, component_id=cid, interface=ctype, version=version
        )
    assert "Outside every declared working state" in _text(clients["viewer"].get("/"))
    Component.objects.filter(key="rtos.R456").update(version="rtos-v2")
    page = _text(clients["viewer"].get("/"))
    assert re.search(r"Declared working state: <strong>system v\.2</strong>", page)
    assert "Outside every" not in page


def test_it_verifies_the_audit_journal_on_request_and_names_a_break(clients: dict[str, Client]) -> None:
    deployment_record("system-core-v2", "succeeded")
    viewer = clients["viewer"]
    assert 'id="journal-state"' not in _text(viewer.get("/audit/"))  # not on every visit
    intact = _text(viewer.get("/audit/?verify=1"))
    assert re.search(r'id="journal-state"[^>]*class="ok">\s*<strong>Intact:</strong> journal intact', intact)
    first = JournalEntry.objects.order_by("seq").first()
    assert first is not None
    JournalEntry.objects.filter(seq=first.seq).update(kind="tampered")  # an edit behind our back
    broken = _text(viewer.get("/audit/?verify=1"))
    assert "<strong>Broken:</strong> journal BROKEN at" in broken and f"{first.seq}" in broken
