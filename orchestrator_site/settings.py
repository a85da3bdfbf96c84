"""One env-driven settings file (healthchecks style): every knob is an environment variable
read through a strict helper, with defaults that run the appliance on a fresh checkout."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

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


def envsecret(name: str, default: str) -> str:
    """`NAME_FILE` wins over `NAME`, so secrets can come from mounted files."""
    path = os.getenv(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {exc}") from exc
    return os.getenv(name, default)


DATASTORE_DIR = Path(
    os.getenv("MENDER_ORCHESTRATOR_DATASTORE_DIR", str(BASE_DIR / "var" / "lib" / "mender-orchestrator"))
).resolve()
DATA_DIR = Path(os.getenv("MENDER_ORCHESTRATOR_DATA_DIR", "/usr/share/mender-orchestrator"))
CONF_DIR = Path(os.getenv("MENDER_ORCHESTRATOR_CONF_DIR", "/etc/mender-orchestrator"))
TOPOLOGY_DIR = Path(os.getenv("MENDER_ORCHESTRATOR_TOPOLOGY_DIR", str(DATASTORE_DIR)))
TOPOLOGY_COMPONENTS_FILE = os.getenv("MENDER_ORCHESTRATOR_TOPOLOGY_COMPONENTS_FILE", "")
REBOOT_COMMAND = os.getenv("ORCH_REBOOT_COMMAND", "reboot")

SECRET_KEY = envsecret("SECRET_KEY", "dev-only-not-secret-change-me")
DEBUG = envbool("DEBUG", "False")
ALLOWED_HOSTS = [h for h in os.getenv("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "devices",
    "updates",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "orchestrator_site.urls"
WSGI_APPLICATION = "orchestrator_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database() -> dict[str, object]:
    url = os.getenv("DATABASE_URL", "")
    if url:
        return dict(dj_database_url.parse(url, conn_max_age=0))
    # An appliance loses power: WAL + synchronous=FULL keeps every committed step row, and
    # IMMEDIATE makes writers wait for the busy timeout instead of failing at once.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DATASTORE_DIR / "orchestrator.sqlite3"),
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
        },
        "TEST": {"NAME": os.getenv("ORCH_TEST_DB", str(DATASTORE_DIR / "test.sqlite3"))},
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATASTORE_DIR / "static"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": os.getenv("LOG_LEVEL", "WARNING")},
}
