"""The appliance's settings plus one trivial view (the benchmark's baseline), same middleware."""

from orchestrator_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.api_load_urls"
