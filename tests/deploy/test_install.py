"""deploy/install.sh into a temporary root (--root, --no-systemctl), as root: the tree, the
units (systemd-analyze verify), the nginx site (nginx -t), a second run that changes nothing,
the installed web server and command line running, and deploy/uninstall.sh.

One install per module (pip is the slow part); the uninstall test comes last in the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2]
INSTALL = SOURCE / "deploy" / "install.sh"
UNINSTALL = SOURCE / "deploy" / "uninstall.sh"
UNITS = [
    "mender-orchestrator.target",
    "mender-orchestrator-migrate.service",
    "mender-orchestrator-resume.service",
    "mender-orchestrator-worker.service",
    "mender-orchestrator-web.service",
]
# Debian's, as on a gateway (docs/install.md): the service user must be able to run the venv's
# python, and a python under /root (pyenv) is out of its reach.
PYTHON = "/usr/bin/python3"
# The deploy engineer's port range (8450-8499).
WEB_PORT = 8450 + int(os.getenv("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
# What the scripts see: a plain root shell, not this test run's data store or Django settings.
CLEAN_ENV = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": "/root"}

if os.geteuid() != 0:
    pytest.fail(
        "tests/deploy needs root: install.sh creates a system user, chowns to it and runs the web "
        "server as it (CI and the dev machines run as root)",
        pytrace=False,
    )


@dataclass(frozen=True)
class Install:
    root: Path
    first: str  # install.sh's output, first run
    second: str  # ... and second run
    before: dict[str, str]  # tree snapshot after the first run
    after: dict[str, str]  # ... after the second
    uid: int
    gid: int

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")


def _run_install(root: Path) -> str:
    done = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--no-systemctl", "--python", PYTHON],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _snapshot(root: Path) -> dict[str, str]:
    """Every path: type, mode, owner and content hash (symlinks: their target). The venv by
    its stamp and size/mtime only: hashing it costs more than the install."""
    shot = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        head = f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}"
        if path.is_symlink():
            shot[rel] = f"{head} -> {path.readlink()}"
        elif path.is_file() and "/venv/" not in f"/{rel}":
            shot[rel] = f"{head} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        elif path.is_file():
            shot[rel] = f"{head} {st.st_size} {st.st_mtime_ns}"
        else:
            shot[rel] = head
    return shot


def _ids(root: Path, name: str) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no {name} in {root}/etc/passwd")


# One install for the whole module, on one xdist worker (bin/test: --dist loadgroup): each worker
# would otherwise pay for its own (mostly pip).
pytestmark = pytest.mark.xdist_group("install")


@pytest.fixture(scope="module")
def install(request: pytest.FixtureRequest) -> Install:
    # Under /tmp itself: pytest's own temp folder is root's alone (0700), which the service user
    # running the web server could not enter.
    root = Path(tempfile.mkdtemp(prefix="orch-deploy-root-", dir="/tmp"))
    root.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    etc = root / "etc"
    etc.mkdir()
    # The least useradd --prefix needs: root's entries in the four databases.
    for name, line, mode in [
        ("passwd", "root:x:0:0:root:/root:/bin/bash", 0o644),
        ("group", "root:x:0:", 0o644),
        ("shadow", "root:*:19000:0:99999:7:::", 0o600),
        ("gshadow", "root:*::", 0o600),
    ]:
        (etc / name).write_text(line + "\n")
        (etc / name).chmod(mode)
    first = _run_install(root)
    before = _snapshot(root)
    second = _run_install(root)
    uid, gid = _ids(root, "mender-orchestrator")
    return Install(root, first, second, before, _snapshot(root), uid, gid)


def _mode(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def _env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    return {key: value for key, _, value in (line.partition("=") for line in lines)}


def test_it_installs_the_tree_with_the_datastore_on_data_and_the_service_group(install: Install) -> None:
    p, gid = install.path, install.gid
    assert install.uid > 0 and gid > 0
    assert "created the system user and group mender-orchestrator" in install.first
    assert p("/var/lib/mender-orchestrator").readlink() == p("/data/mender-orchestrator")
    store = p("/data/mender-orchestrator")
    assert _mode(store) == (0o2770, 0, gid)
    for sub in ("static", "uploads"):
        assert _mode(store / sub)[0] & 0o2070 == 0o2070, sub
    # Created by root's `migrate` (0640 by SQLite's default): made group-writable for the web user;
    # its -wal/-shm, when there, take the database's mode.
    mode, _, group = _mode(store / "orchestrator.sqlite3")
    assert group == gid and mode & 0o060 == 0o060
    assert _mode(p("/etc/mender-orchestrator")) == (0o750, 0, gid)
    assert _mode(p("/etc/mender-orchestrator/secret_key")) == (0o640, 0, gid)
    assert len(p("/etc/mender-orchestrator/secret_key").read_text().strip()) >= 50
    env = _env_file(p("/etc/mender-orchestrator/orchestrator.env"))
    assert env["MENDER_ORCHESTRATOR_DATASTORE_DIR"] == str(p("/var/lib/mender-orchestrator"))
    assert env["SECRET_KEY_FILE"] == str(p("/etc/mender-orchestrator/secret_key"))
    assert env["DEBUG"] == "False" and env["ORCH_SECURE_COOKIES"] == "True"
    assert p("/usr/share/mender-orchestrator/interfaces/v1").is_dir()
    app = p("/opt/mender-orchestrator/app")
    assert app.is_symlink() and (app / "manage.py").is_file()
    assert not any((app / name).exists() for name in (".venv", "var", ".git", "tests", "bench"))
    assert (p("/opt/mender-orchestrator/venv/bin/gunicorn")).is_file()
    assert not (p("/opt/mender-orchestrator/venv/bin/pytest")).exists()  # runtime requirements only
    wrapper = p("/usr/bin/mender-orchestrator")
    assert _mode(wrapper)[0] == 0o755
    assert (
        f"{p('/opt/mender-orchestrator/venv')}/bin/python {app}/manage.py orchestrator" in wrapper.read_text()
    )
    assert "created user admin (role admin) with password: " in install.first


def test_it_writes_units_that_systemd_analyze_verifies(install: Install) -> None:
    units = [install.path(f"/etc/systemd/system/{u}") for u in UNITS]
    web = units[-1].read_text()
    assert f"ReadWritePaths={install.path('/data/mender-orchestrator')}\n" in web
    assert "User=mender-orchestrator\n" in web
    assert "ExecStart=" + str(install.path("/usr/bin/mender-orchestrator")) + " resume --interrupted\n" in (
        units[2].read_text()
    )
    settings = "\n".join(
        line for u in units for line in u.read_text().splitlines() if not line.startswith("#")
    )
    assert not re.search(r"@[A-Z_]+@", settings)  # every placeholder filled
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian: apt-get install systemd)"
    # Offline: it parses every setting, checks the ExecStart binaries exist and the units named
    # in Requires/Wants/After are found (all given together).
    done = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_it_writes_an_nginx_site_that_nginx_accepts(install: Install, tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is missing (Debian: apt-get install nginx; .ci/setup installs it)"
    site = install.path("/etc/nginx/sites-available/mender-orchestrator.conf")
    text = site.read_text()
    assert "client_max_body_size 2g;" in text
    assert f"client_body_temp_path {install.path('/data')}/nginx-client-body" in text
    tls = install.path("/etc/mender-orchestrator/tls")
    tls.mkdir()
    subprocess.run(
        [
            *[
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=gateway",
            ],
            *["-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")],
        ],
        check=True,
        capture_output=True,
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"events {{}}\nhttp {{\n  include {site};\n}}\n")
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-g", f"pid {tmp_path}/nginx.pid;"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    shutil.rmtree(tls)  # the idempotency test's tree has none
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_it_changes_nothing_on_a_second_run(install: Install) -> None:
    assert "nothing to change" in install.second
    assert "password" not in install.second  # the first admin's, shown once
    assert "installed the runtime requirements" in install.first
    assert "installed the runtime requirements" not in install.second  # pip not run again
    changed = {
        k
        for k in install.before.keys() | install.after.keys()
        if install.before.get(k) != install.after.get(k)
    }
    assert changed == set()


def _web_command(install: Install) -> tuple[list[str], dict[str, str], Path]:
    """The web unit's ExecStart, its variables expanded as systemd does: Environment=, then the
    environment file over it, then this test's port."""
    unit: dict[str, str] = {}
    env = dict(CLEAN_ENV)
    for line in install.path("/etc/systemd/system/mender-orchestrator-web.service").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            env.update(item.partition("=")[::2] for item in shlex.split(value))
        elif key in ("ExecStart", "WorkingDirectory", "EnvironmentFile"):
            unit[key] = value
    env.update(_env_file(Path(unit["EnvironmentFile"])))
    env["ORCH_WEB_BIND"] = f"127.0.0.1:{WEB_PORT}"
    argv = [arg.replace("${ORCH_WEB_BIND}", env["ORCH_WEB_BIND"]) for arg in shlex.split(unit["ExecStart"])]
    for name in ("ORCH_WEB_WORKERS", "ORCH_WEB_THREADS"):
        argv = [arg.replace("${" + name + "}", env[name]) for arg in argv]
    assert not any("$" in arg for arg in argv), argv
    return argv, env, Path(unit["WorkingDirectory"])


@pytest.fixture
def web(install: Install) -> Iterator[str]:
    argv, env, cwd = _web_command(install)
    # As the unit runs it: the service user's numeric ids (unknown to this machine's NSS), umask 007.
    setpriv = ["setpriv", f"--reuid={install.uid}", f"--regid={install.gid}", "--clear-groups"]
    proc = subprocess.Popen(
        [*setpriv, "sh", "-c", 'umask 007 && exec "$@"', "web", *argv],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{WEB_PORT}"
        for _ in range(300):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", WEB_PORT)) == 0:
                    break
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_the_installed_web_server_answers_as_the_service_user(install: Install, web: str) -> None:
    try:
        with urllib.request.urlopen(f"{web}/api/v1/health", timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:  # 503: the worker is not running here; the body says
        body = json.load(exc)
    checks = body["checks"]
    assert checks["database"]["state"] == "up", body
    # The embedded broker's folders, made by root at install, are writable by the web user.
    assert checks["broker"]["state"] == "up", body

    # The database root created (install.sh's migrate) is writable by the web user: a request
    # with a token root made records the token's use.
    wrapper = str(install.path("/usr/bin/mender-orchestrator"))
    made = subprocess.run(
        [wrapper, "token", "create", "--user", "admin", "--role", "admin", "--name", "deploy-test"],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    # As nginx forwards it (ORCH_SSL_REDIRECT sends plain http elsewhere).
    headers = {"Authorization": f"Bearer {made.stdout.strip()}", "X-Forwarded-Proto": "https"}
    request = urllib.request.Request(f"{web}/api/v1/bundles", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.load(response)["total"] == 0
    listed = subprocess.run(
        [wrapper, "token", "list"], env=CLEAN_ENV, capture_output=True, text=True, timeout=120
    )
    line = next(line for line in listed.stdout.splitlines() if "deploy-test" in line)
    assert "last used never" not in line and "last used 20" in line, line


def test_the_installed_command_line_runs(install: Install) -> None:
    wrapper = str(install.path("/usr/bin/mender-orchestrator"))
    version = subprocess.run(
        [wrapper, "--version"], env=CLEAN_ENV, capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("mender-orchestrator "), version
    status = subprocess.run([wrapper, "status"], env=CLEAN_ENV, capture_output=True, text=True, timeout=120)
    # A fresh appliance: no topology yet, no deployment (exit 0 or 2 per docs/cli.md §8, never a crash).
    assert status.returncode in (0, 2), status.stdout + status.stderr
    assert "Traceback" not in status.stderr
    # Django's deployment checklist with the example environment: only the two HSTS warnings
    # left on purpose (a gateway's subdomains are not ours to pin; preload lists are for sites).
    check = subprocess.run(
        [wrapper, "--manage", "check", "--deploy"], env=CLEAN_ENV, capture_output=True, text=True, timeout=120
    )
    assert set(re.findall(r"security\.W\d+", check.stderr + check.stdout)) == {
        "security.W005",
        "security.W021",
    }


def test_uninstall_removes_the_app_and_keeps_the_data_store(install: Install) -> None:
    p = install.path
    db = p("/data/mender-orchestrator/orchestrator.sqlite3")
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    done = subprocess.run(
        ["bash", str(UNINSTALL), "--root", str(install.root), "--no-systemctl"],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for gone in ["/opt/mender-orchestrator", "/usr/bin/mender-orchestrator"] + [
        f"/etc/systemd/system/{u}" for u in UNITS
    ]:
        assert not p(gone).exists(), gone
    assert not p("/etc/nginx/sites-available/mender-orchestrator.conf").exists()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert p("/var/lib/mender-orchestrator").resolve() == p("/data/mender-orchestrator")
    assert p("/etc/mender-orchestrator/orchestrator.env").is_file()
    assert "mender-orchestrator:" in p("/etc/passwd").read_text()
