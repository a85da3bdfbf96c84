"""Caps on tar's own metadata headers, checked before tarfile reads them.

A PAX extended header or a GNU long-name/long-link header is a member whose *data* tarfile reads
into memory whole, before any member is handed to us: a hostile 1 GiB PAX header would be read
into memory by `tar.next()`. `frombuf` sees each 512-byte header block first, so the announced size
is refused there, before a byte of it is read. Member names leave as safe text (engine/text.py).
"""

from __future__ import annotations

import functools
import tarfile
from typing import Self

from updates.engine.text import safe_text

from .errors import LimitError

_LONG_NAMES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class CappedTarInfo(tarfile.TarInfo):
    max_name_bytes = 4096
    max_extended_bytes = 10 << 20

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        info = super().frombuf(buf, encoding, errors)
        if info.type in _LONG_NAMES and info.size > cls.max_name_bytes + 1:  # + the NUL
            kind = "long-name" if info.type == tarfile.GNUTYPE_LONGNAME else "long-link"
            raise LimitError(
                f"GNU {kind} header of {info.size} bytes exceeds the member-name cap of {cls.max_name_bytes}"
            )
        if info.type in _EXTENDED and info.size > cls.max_extended_bytes:
            raise LimitError(
                f"PAX extended header of {info.size} bytes exceeds the header cap of {cls.max_extended_bytes}"
            )
        return info

    @classmethod
    def fromtarfile(cls, tarfile: tarfile.TarFile) -> Self:
        # Every member (after its GNU long-name or PAX records are applied) leaves here with
        # printable names: a name of undecodable bytes is never handed on (engine/text.py).
        info = super().fromtarfile(tarfile)
        info.name, info.linkname = safe_text(info.name), safe_text(info.linkname)
        info.uname, info.gname = safe_text(info.uname), safe_text(info.gname)
        info.pax_headers = {safe_text(k): safe_text(v) for k, v in info.pax_headers.items()}
        return info


@functools.cache
def capped_tarinfo(max_name_bytes: int, max_extended_bytes: int) -> type[tarfile.TarInfo]:
    """The TarInfo class to pass as `tarfile.open(tarinfo=...)` for these caps."""
    caps = {"max_name_bytes": max_name_bytes, "max_extended_bytes": max_extended_bytes}
    return type("CappedTarInfo", (CappedTarInfo,), caps)
