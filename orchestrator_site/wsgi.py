import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from orchestrator_site.slowbody import slow_body_guard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
# Slow request bodies are cut off here, in the app server, whether or not nginx is in front
# (docs/security.md §6); behind the shipped nginx every body arrives at once and is never cut.
application = slow_body_guard(
    get_wsgi_application(), grace=settings.BODY_GRACE_SECONDS, rate=settings.BODY_MIN_BYTES_PER_SECOND
)
