"""Where `artifact_name` is resolved when a manifest's `artifact_path` does not exist.

The artifact store and the configured artifact server (issue #5) plug in here; the planner
asks them in order (reference §3.1).
"""

from __future__ import annotations

from updates.engine.planner import ArtifactSource
from updates.services.environment import Environment


def artifact_sources(env: Environment) -> list[ArtifactSource]:
    return []
