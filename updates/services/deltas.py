"""Delta bundles at intake (docs/bytes.md): rebuilt from the bases the artifact store holds."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from updates.engine.delta import expand_delta_bundle, read_index
from updates.engine.store import SHA_RE
from updates.services.environment import environment_load
from updates.services.sources import artifact_store


def delta_bundle_expand(path: Path) -> Path | None:
    """The full bundle a delta bundle stands for, in a temporary file the caller removes; None
    for any other file. Every delta is rebuilt against its base (by sha256, from the store) and
    must give the listed sha256 and size."""
    entries = read_index(path)
    if entries is None:
        return None
    env = environment_load()
    store = artifact_store(env)

    def base_path(sha256: str) -> Path | None:
        return store.path(sha256) if SHA_RE.fullmatch(sha256) and store.has(sha256) else None

    fd, name = tempfile.mkstemp(dir=env.datastore, prefix=".delta-", suffix=".tar")
    os.close(fd)
    out = Path(name)
    try:
        expand_delta_bundle(path, entries, base_path, out)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out
