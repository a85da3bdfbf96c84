"""One env-driven settings file (healthchecks style): every knob is an environment variable
read through a strict helper, with defaults that run the appliance on a fresh checkout."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from orchestrator_site.logs import LOG_FORMATS, LOG_LEVELS, logging_config
from updates.appliance import load_local_env, paths_from_env
from updates.engine.fetchguard import AddressGuard
from updates.engine.fsutil import private_file_mode

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default)
    if value not in ("True", "False"):
        raise ImproperlyConfigured(f"{name} must be True or False, not {value!r}")
    return value == "True"


def envint(name: str, default: str) -> int:
    value = os.getenv(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def envchoice(name: str, default: str, choices: tuple[str, ...], *, fold: bool = False) -> str:
    """One of `choices`; `fold` accepts any case (LOG_LEVEL=info) and returns the choice's."""
    value = os.getenv(name, default)
    found = next((c for c in choices if c == value or (fold and c.lower() == value.lower())), None)
    if found is None:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return found


def envsecret(name: str, default: str) -> str:
    """`NAME_FILE` wins over `NAME`, so secrets can come from mounted files."""
    path = os.getenv(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {exc}") from exc
    return os.getenv(name, default)


def envjsonobject(name: str) -> dict[str, str]:
    try:
        value = json.loads(os.getenv(name) or "{}")
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a JSON object: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ImproperlyConfigured(f'{name} must be a JSON object of strings, like {{"mac": "02:00:..."}}')
    return value


LOCAL_ENV_FILE = load_local_env(BASE_DIR)  # before any variable is read
PATHS = paths_from_env(BASE_DIR)
DATASTORE_DIR = PATHS.datastore
DATA_DIR = PATHS.data_dir
CONF_DIR = PATHS.conf_dir
TOPOLOGY_DIR = PATHS.topology_dir
TOPOLOGY_COMPONENTS_FILE = PATHS.topology_components_file
REBOOT_COMMAND = os.getenv("ORCH_REBOOT_COMMAND", "reboot")
# `stored`: this process never calls an update interface; the components' answers come from what
# the workers stored (updates/services/stored_inspection.py). The production web server runs
# unprivileged with it (deploy/systemd); the workers and the command line always ask live.
INTERFACE_QUERIES = envchoice("ORCH_INTERFACE_QUERIES", "live", ("live", "stored"))
# A worker asks every component what it runs when it starts (the stored answers above are then
# fresh after a boot).
REFRESH_ON_WORKER_START = envbool("ORCH_REFRESH_ON_WORKER_START", "False")
# How long to wait for the host to go down after REBOOT_COMMAND returned (Mender waits 10 min);
# the demo and the tests, whose reboot command is harmless, set 0.
REBOOT_WAIT_SECONDS = envint("ORCH_REBOOT_WAIT_SECONDS", "600")
# The audit journal (docs/audit.md): sign the chain head every N entries (and at every deployment
# end); clear step output older than N days after each deployment (0: keep it; the journal keeps
# its digests either way).
AUDIT_ANCHOR_EVERY = envint("ORCH_AUDIT_ANCHOR_EVERY", "100")
AUDIT_OUTPUT_RETENTION_DAYS = envint("ORCH_AUDIT_OUTPUT_RETENTION_DAYS", "0")
# How many automatic `pre-migrate-*` backups `orchestrator migrate` keeps (manual ones: all).
BACKUP_KEEP = envint("ORCH_BACKUP_KEEP", "3")


def _secret_key() -> str:
    """SECRET_KEY(_FILE) when given; else a random key kept in the data store, readable only by
    the service (0600), so sessions and CSRF tokens survive a restart and no default key ships."""
    given = envsecret("SECRET_KEY", "")
    if given:
        return given
    path = DATASTORE_DIR / "secret_key"
    key = secrets.token_urlsafe(50)
    try:
        if path.exists():
            return path.read_text().strip()
        DATASTORE_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, private_file_mode(DATASTORE_DIR))
    except FileExistsError:  # another process (the worker, say) made it first
        return path.read_text().strip()
    except OSError:
        # An unusable data store is reported by whoever uses it (the CLI: in one line); a key
        # for this process alone is enough until then.
        return key
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


SECRET_KEY = _secret_key()
DEBUG = envbool("DEBUG", "False")
ALLOWED_HOSTS = [h for h in os.getenv("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "accounts",
    "devices",
    "updates",
]

MIDDLEWARE = [
    # Outermost: whatever Django answers under /api/ (a bad Host, no route, wrong method) gets the
    # error envelope.
    "updates.api.errors.ApiEnvelopeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every answer (docs/security.md §5).
    "orchestrator_site.middleware.SecurityHeadersMiddleware",
    # Static files from the app itself (the web UI's, and the API docs page's own scripts and
    # styles: no CDN, an appliance may have no internet), right after SecurityMiddleware.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "orchestrator_site.middleware.SessionIdleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "updates.api.uploads.UploadCleanupMiddleware",
]

ROOT_URLCONF = "orchestrator_site.urls"
_NINJA_DIR = Path(str(importlib.util.find_spec("ninja").origin)).parent  # type: ignore[union-attr]
WSGI_APPLICATION = "orchestrator_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # django-ninja's docs page templates, found without importing ninja (not an installed
        # app: every command-line call would pay for importing it).
        "DIRS": [BASE_DIR / "templates", _NINJA_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "updates.web.context_processors.role",
            ],
            # `status_label` on every page: one wording per status (updates/statuses.py).
            "builtins": ["updates.web.filters"],
        },
    },
]


def _database() -> dict[str, object]:
    url = os.getenv("DATABASE_URL", "")
    if url:
        db = dict(dj_database_url.parse(url, conn_max_age=0))
        if db["ENGINE"] != "django.db.backends.sqlite3":
            return db
        # sqlite:///path (a worker pointed at a test database, say) gets the same safety options.
        return _sqlite(str(db["NAME"]))
    return _sqlite(str(DATASTORE_DIR / "orchestrator.sqlite3"))


def _sqlite(name: str) -> dict[str, object]:
    # An appliance loses power: WAL + synchronous=FULL keeps every committed step row, and
    # IMMEDIATE makes writers wait for the busy timeout instead of failing at once.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": name,
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
        },
        # A file, never memory: the Celery worker of the worker tests shares it from another process.
        "TEST": {"NAME": os.getenv("ORCH_TEST_DB", str(DATASTORE_DIR / "test.sqlite3"))},
        # The web server keeps a connection per thread instead of opening (and re-running the
        # PRAGMAs) per request; the CLI and the workers never reach the request cycle that closes it.
        "CONN_MAX_AGE": envint("ORCH_DB_CONN_MAX_AGE", "300"),
        "CONN_HEALTH_CHECKS": True,
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's database sessions and password check; the session row and the user with its role are
# read with queries compiled once per process (accounts/sessions.py, accounts/backends.py), still
# on every request. A session signed in under Django's own backend before this signs in again.
SESSION_ENGINE = "accounts.sessions"
AUTHENTICATION_BACKENDS = ["accounts.backends.UserRoleBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"  # the web UI's System page
LOGOUT_REDIRECT_URL = "/accounts/login/"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# A request body sent to gunicorn must keep up, after the grace time, with this average rate, or
# it is cut (orchestrator_site/asgi.py, slowbody.py): slow clients cannot hold every thread.
BODY_GRACE_SECONDS = float(envint("ORCH_BODY_GRACE_SECONDS", "2"))
BODY_MIN_BYTES_PER_SECOND = float(envint("ORCH_BODY_MIN_BYTES_PER_SECOND", "1024"))
# A signed-in browser left alone this long is signed out (orchestrator_site/middleware.py); the
# session cookie's own age (two weeks, Django's default) bounds even a busy session.
SESSION_IDLE_SECONDS = envint("ORCH_SESSION_IDLE_SECONDS", "3600")
CSRF_COOKIE_SAMESITE = "Lax"

# ----- Production behind nginx (deploy/, docs/install.md) ------------------------------------------
# Off by default: a fresh checkout is served over plain http://127.0.0.1, where secure cookies
# would never be sent back and HSTS would pin a browser to an https nobody serves.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = envbool("ORCH_SECURE_COOKIES", "False")
SECURE_HSTS_SECONDS = envint("ORCH_HSTS_SECONDS", "0")
# Subdomains of the gateway's name are not ours to pin to https.
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("ORCH_HSTS_INCLUDE_SUBDOMAINS", "False")
# nginx terminates TLS and says so in X-Forwarded-Proto; trusted only when we sit behind it (a
# client talking to gunicorn directly could claim https otherwise).
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if envbool("ORCH_BEHIND_PROXY", "False") else None
)
# Behind the proxy the client address is the last X-Forwarded-For entry, but only on a request
# that comes from one of these addresses (the proxy itself); anyone else could write any address.
BEHIND_PROXY = envbool("ORCH_BEHIND_PROXY", "False")
TRUSTED_PROXIES = [
    a.strip() for a in os.getenv("ORCH_TRUSTED_PROXIES", "127.0.0.1,::1").split(",") if a.strip()
]
# nginx already sends plain http to https; this redirects whatever reaches gunicorn otherwise.
# The health check stays answerable on the local port (monitoring asks it without TLS).
SECURE_SSL_REDIRECT = envbool("ORCH_SSL_REDIRECT", "False")
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$"]
# The https origins the browser UI is reached at (Django 4+ checks the Origin of form posts).
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.getenv("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

# ----- REST API (orchestrator_site/api.py) -----------------------------------------------------
# Uploads go to disk in chunks (never whole in memory), under the data store so a bundle can be
# hard-linked or moved on the same file system; beyond the limit the upload is cut off (413).
UPLOAD_MAX_BYTES = envint("ORCH_UPLOAD_MAX_BYTES", str(2 * 1024**3))
FILE_UPLOAD_HANDLERS = ["updates.api.uploads.LimitedUploadHandler"]
FILE_UPLOAD_TEMP_DIR = str(DATASTORE_DIR / "uploads")
with contextlib.suppress(OSError):  # Django's system check wants it to exist
    Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
# Bad API tokens per client address, failed logins per (client address, account): LIMIT in
# WINDOW seconds -> 429 for further bad tokens, and that account's login refused from that address.
# A valid token is never refused (docs/security.md); `orchestrator access unblock` clears a block.
AUTH_FAILURE_LIMIT = envint("ORCH_AUTH_FAILURE_LIMIT", "10")
AUTH_FAILURE_WINDOW_SECONDS = envint("ORCH_AUTH_FAILURE_WINDOW_SECONDS", "300")
# How often the events stream looks at the database, and how long one stream may stay open.
EVENTS_POLL_SECONDS = float(os.getenv("ORCH_EVENTS_POLL_SECONDS", "0.5"))
EVENTS_MAX_SECONDS = envint("ORCH_EVENTS_MAX_SECONDS", "3600")
# Threads per web worker for the views (orchestrator_site/asgi.py; the event streams need none).
WEB_THREADS = max(1, envint("ORCH_WEB_THREADS", "8"))
# Open event streams per user in one web process; one more is refused with 429 (docs/api.md).
EVENTS_PER_USER = envint("ORCH_EVENTS_PER_USER", "20")
# An idle stream gets a comment line this often, so proxies and browsers keep it open.
EVENTS_HEARTBEAT_SECONDS = float(os.getenv("ORCH_EVENTS_HEARTBEAT_SECONDS", "15"))

STATIC_URL = "static/"
STATIC_ROOT = DATASTORE_DIR / "static"
# The UI's files, and the docs page's scripts from ninja (no CDN).
STATICFILES_DIRS = [BASE_DIR / "orchestrator_site" / "static", _NINJA_DIR / "static"]
# Hashed names and far-future cache headers once collected (bin/run); before that, plain names
# served from the folders above as they are.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "orchestrator_site.staticfiles.StaticStorage"},
}
with contextlib.suppress(OSError):  # WhiteNoise warns about a missing one (collectstatic fills it)
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# ----- Logs (orchestrator_site/logs.py, docs/logging.md) -------------------------------------------
# To stderr only (journald under systemd): the CLI's stdout is Mender's to parse. Lines inside a
# deployment carry its id. The worker's `-l` and the CLI's `--log-level` can lower the level.
LOG_FORMAT = envchoice("ORCH_LOG_FORMAT", "text", LOG_FORMATS)
LOG_LEVEL = envchoice("LOG_LEVEL", "WARNING", LOG_LEVELS, fold=True)
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)

# ----- Celery (worker/): long, side-effecting deployments -----------------------------------------
# Without CELERY_BROKER_URL the broker is the file-system transport under <datastore>/queue/,
# so a fresh machine runs the whole product with no server; production sets redis://.
# ("localhost" only keeps kombu from warning that no host was given.)
CELERY_BROKER_URL = os.getenv("CELERY_BROKER_URL", "") or "filesystem://localhost//"
# Our subclass of kombu's file-system transport (same folders): kombu's lets a reader see a
# half-written message, which kills the worker, and lets two readers take the same one (issue 15).
FILESYSTEM_TRANSPORT = "worker.transport:Transport"
CELERY_BROKER_TRANSPORT = FILESYSTEM_TRANSPORT if CELERY_BROKER_URL.startswith("filesystem:") else None
QUEUE_DIR = DATASTORE_DIR / "queue"
# Redis hands an unacknowledged message to another worker after this many seconds. Deployment
# messages stay unacknowledged for the whole run (acks_late), so it must exceed the longest
# interface call (InterfaceTimeoutSeconds, 4 h by default); the worker refuses to start otherwise.
# A redelivery while the run goes on is harmless (the claim refuses it), but it costs a no-op task.
CELERY_VISIBILITY_TIMEOUT = envint("CELERY_VISIBILITY_TIMEOUT", "86400")


def _broker_transport_options(url: str) -> dict[str, object]:
    if url.startswith("filesystem:"):
        messages = str(QUEUE_DIR / "messages")
        # Producer and consumer share one folder; 0.2 s polling costs nothing on an idle box.
        return {
            "data_folder_in": messages,
            "data_folder_out": messages,
            "control_folder": str(QUEUE_DIR / "control"),
            "polling_interval": 0.2,
        }
    return {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}


CELERY_BROKER_TRANSPORT_OPTIONS = _broker_transport_options(CELERY_BROKER_URL)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A broker that is away (Redis restarted) is waited for, never given up on after 100 tries:
# a worker that exits leaves the appliance without one until its supervisor restarts it.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_DEFAULT_QUEUE = os.getenv("CELERY_QUEUE", "orchestrator")
# Acknowledge after the run, and put the message back when the pool process running it dies: the
# tasks claim their deployment with a conditional UPDATE, so a second delivery is harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A worker reserves one message at a time, so a queued deployment never waits behind a long one.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Never cut a running deployment: a time limit fires in the middle of a state. Every interface
# call has its own timeout (InterfaceTimeoutSeconds), which the engine handles state by state.
CELERY_TASK_TIME_LIMIT = None
CELERY_TASK_SOFT_TIME_LIMIT = None
# Losing the broker connection must not cancel a running deployment either.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# The database row is the truth of a run; no result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None

# ----- Webhooks (/api/v1/hooks/mender, docs/webhooks.md) --------------------------------------------
# This system's own Mender device: its device ID (else the `sub` of ArtifactServer's device token)
# and, for `device-provisioned` events sent before the ID is known, its identity data as JSON.
MENDER_DEVICE_ID = os.getenv("ORCH_MENDER_DEVICE_ID", "")
MENDER_IDENTITY = envjsonobject("ORCH_MENDER_IDENTITY")
# Which events about the own device queue a components refresh ("" = none).
HOOKS_REFRESH_ON = [
    t.strip()
    for t in os.getenv(
        "ORCH_HOOKS_REFRESH_ON", "device-provisioned,device-status-changed,device-inventory-changed"
    ).split(",")
    if t.strip()
]
_DEVICE_EVENTS = (
    "device-provisioned",
    "device-decommissioned",
    "device-status-changed",
    "device-inventory-changed",
)
if set(HOOKS_REFRESH_ON) - set(_DEVICE_EVENTS):
    raise ImproperlyConfigured(
        f"ORCH_HOOKS_REFRESH_ON: each entry must be one of {', '.join(_DEVICE_EVENTS)}"
    )
HOOKS_MAX_BODY_BYTES = envint("ORCH_HOOKS_MAX_BODY_BYTES", str(256 << 10))
HOOKS_DOWNLOAD_MAX_BYTES = envint("ORCH_HOOKS_DOWNLOAD_MAX_BYTES", str(4 << 30))
# A deployment request's URL is fetched on a worker within this many seconds, all retries included.
HOOKS_FETCH_SECONDS = envint("ORCH_HOOKS_FETCH_SECONDS", "1800")
# Hosts (names, addresses or CIDR networks) a bundle URL may reach although they are not public:
# a lab server. Everything else loopback, link-local, private … is refused (docs/security.md §4).
HOOKS_FETCH_ALLOW = [h.strip() for h in os.getenv("ORCH_HOOKS_FETCH_ALLOW", "").split(",") if h.strip()]
try:
    AddressGuard.from_entries(HOOKS_FETCH_ALLOW)
except ValueError as _exc:
    raise ImproperlyConfigured(f"ORCH_HOOKS_FETCH_ALLOW: {_exc}") from None
