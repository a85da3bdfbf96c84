"""Static files of the web UI, served by WhiteNoise from the app itself."""

from __future__ import annotations

from typing import Any

from whitenoise.storage import CompressedManifestStaticFilesStorage  # type: ignore[import-untyped]


class StaticStorage(CompressedManifestStaticFilesStorage):  # type: ignore[misc]
    """After `collectstatic` (bin/run does it): content-hashed names, which WhiteNoise serves with
    far-future cache headers. Before it (tests, a fresh checkout) a file has no hashed name yet:
    it keeps its plain one and WhiteNoise finds it in STATICFILES_DIRS (WHITENOISE_USE_FINDERS)."""

    manifest_strict = False

    def hashed_name(self, name: str, content: Any = None, filename: str | None = None) -> str:
        try:
            return str(super().hashed_name(name, content, filename))
        except ValueError:  # not collected
            if content is not None:
                raise
            return name
