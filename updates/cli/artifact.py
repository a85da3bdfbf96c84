"""`orchestrator artifact read|validate|write`: the artifact library on the command line.

Option names follow mender-artifact 3.9 so existing build scripts port over unchanged.
Exit codes: 0 ok, 1 invalid artifact or failed write (one line on stderr), 2 usage errors,
including files named on the command line that do not exist.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from updates.engine.artifact import (
    ArtifactError,
    ArtifactInfo,
    PublicKey,
    load_private_key,
    load_public_key,
    read_artifact,
    write_artifact,
)
from updates.engine.artifact.names import SUFFIXES

Handler = Callable[[argparse.Namespace], int]


class _UsageError(Exception):
    """Bad command line that argparse cannot see (e.g. a named file does not exist)."""


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("artifact", help="read, validate, write .mender files")
    commands = parser.add_subparsers(dest="artifact_command", required=True, metavar="SUBCOMMAND")
    _add_read(commands)
    _add_validate(commands)
    write = commands.add_parser("write", help="write a module-image or rootfs-image artifact")
    kinds = write.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in ("module-image", "rootfs-image"):
        _add_write_options(kinds.add_parser(kind, help=f"write a {kind} artifact"), kind)


def _add_read(commands: Any) -> None:
    parser = commands.add_parser("read", help="verify an artifact and print its fields")
    parser.add_argument("file", type=Path)
    parser.add_argument("--json", action="store_true", help="print one stable JSON object")
    parser.add_argument("-k", "--key", action="append", default=[], type=Path, help="public key (repeatable)")
    parser.set_defaults(handler=_guarded(_read))


def _add_validate(commands: Any) -> None:
    parser = commands.add_parser("validate", help="verify an artifact completely")
    parser.add_argument("file", type=Path)
    parser.add_argument("-k", "--key", action="append", default=[], type=Path, help="public key (repeatable)")
    parser.set_defaults(handler=_guarded(_validate))


def _add_write_options(parser: argparse.ArgumentParser, kind: str) -> None:
    add = parser.add_argument
    add("-n", "--artifact-name", required=True)
    add("-t", "--compatible-types", "--device-type", dest="device_types", action="append", required=True)
    add("-T", "--type", dest="payload_type", required=kind == "module-image")
    add("-f", "--file", dest="files", action="append", type=Path, default=[], required=kind == "rootfs-image")
    add("-o", "--output-path", type=Path, required=True)
    add("-p", "--provides", action="append", default=[], metavar="KEY:VALUE")
    add("-d", "--depends", action="append", default=[], metavar="KEY:VALUE")
    add("--clears-provides", action="append", default=None)
    add("--no-default-clears-provides", action="store_true")
    add("--no-default-software-version", action="store_true")
    add("--software-name")
    add("--software-version")
    add("--software-filesystem")
    add("-N", "--artifact-name-depends", action="append", default=[])
    add("-g", "--provides-group")
    add("-G", "--depends-groups", action="append", default=[])
    add("-m", "--meta-data", type=Path)
    add("-s", "--script", dest="scripts", action="append", type=Path, default=[])
    add("--compression", choices=tuple(SUFFIXES), default="gzip", help="as mender-artifact: %(choices)s")
    add("-k", "--key", type=Path, help="private key (PKCS#1 RSA or SEC1 P-256 PEM)")
    parser.set_defaults(handler=_guarded(_write))


def _guarded(handler: Handler) -> Handler:
    """Map expected failures to exit codes and a single line on stderr, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except _UsageError as exc:
            print(f"mender-orchestrator artifact: error: {exc}", file=sys.stderr)
            return 2
        except ArtifactError as exc:
            print(f"{_subject(args)}: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"{exc.filename or _subject(args)}: {exc.strerror or exc}", file=sys.stderr)
            return 1

    return run


def _subject(args: argparse.Namespace) -> Path:
    return Path(args.output_path if hasattr(args, "output_path") else args.file)


def _require_files(paths: Sequence[Path | None]) -> None:
    for path in paths:
        if path is not None and not path.is_file():
            raise _UsageError(f"{path}: no such file")


def _keys(paths: Sequence[Path]) -> list[PublicKey]:
    _require_files(paths)
    return [load_public_key(path) for path in paths]


def _read(args: argparse.Namespace) -> int:
    _require_files([args.file])
    keys = _keys(args.key)
    info = read_artifact(args.file, keys=keys)
    print(json.dumps(info_json(info), indent=2, sort_keys=True) if args.json else "\n".join(_human(info)))
    return 0


def _validate(args: argparse.Namespace) -> int:
    _require_files([args.file])
    info = read_artifact(args.file, keys=_keys(args.key))
    signed = "signed" if info.signed else "unsigned"
    print(f"{args.file}: valid ({signed}, {len(info.files)} payload file(s))")
    return 0


def info_json(info: ArtifactInfo) -> dict[str, object]:
    """The stable JSON form of `artifact read --json`."""
    return {
        "name": info.name,
        "group": info.group,
        "device_types": list(info.device_types),
        "depends_artifact_name": list(info.depends_artifact_name),
        "depends_artifact_group": list(info.depends_artifact_group),
        "payload_type": info.payload_type,
        "provides": info.provides,
        "depends": info.depends,
        "clears_provides": None if info.clears_provides is None else list(info.clears_provides),
        "all_provides": info.all_provides(),
        "meta_data": info.meta_data,
        "scripts": list(info.scripts),
        "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in info.files],
        "header_compression": info.header_compression,
        "signed": info.signed,
        "signer_fingerprint": info.signer_fingerprint,
    }


def _signature_line(info: ArtifactInfo) -> str:
    if not info.signed:
        return "no signature"
    if info.signer_fingerprint:
        return f"signed and verified correctly (key sha256 {info.signer_fingerprint})"
    return "signed but no key for verification provided"


def _human(info: ArtifactInfo) -> list[str]:
    lines = ["Mender artifact:", f"  Name: {info.name}", "  Format: mender", "  Version: 3"]
    lines += [f"  Signature: {_signature_line(info)}", f"  Compatible devices: {list(info.device_types)}"]
    lines += [f"  Provides group: {info.group or ''}"]
    lines += [f"  Depends on one of artifact(s): {list(info.depends_artifact_name)}"]
    lines += [f"  Depends on one of group(s): {list(info.depends_artifact_group)}"]
    lines += ["  State scripts:", *(f"    {script}" for script in info.scripts), ""]
    return lines + _human_payload(info)


def _human_payload(info: ArtifactInfo) -> list[str]:
    lines = ["Updates:", "    0:", f"    Type:   {info.payload_type or '(empty payload)'}", "    Provides:"]
    lines += [f"\t{key}: {value}" for key, value in sorted(info.provides.items())]
    lines += ["    Depends:", *(f"\t{key}: {value}" for key, value in sorted(info.depends.items()))]
    clears = json.dumps(list(info.clears_provides)) if info.clears_provides is not None else "(absent: all)"
    lines += [f"    Clears Provides: {clears}", "    Metadata:"]
    lines += [f"\t{line}" for line in json.dumps(info.meta_data, indent=2).splitlines()]
    lines += [f"    Header compression: {info.header_compression}", "    Files:"]
    for entry in info.files:
        lines += [f"      name:     {entry.name}", f"      size:     {entry.size}"]
        lines += [f"      checksum: {entry.sha256}"]
    return lines


def _pairs(items: Sequence[str], option: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise _UsageError(f"{option} wants KEY:VALUE, got {item!r}")
        result[key] = value  # a repeated key: the last one wins, as in mender-artifact
    return result


def _meta_data(path: Path | None) -> dict[str, object] | None:
    if path is None:
        return None
    try:
        value = json.loads(path.read_bytes())
    except ValueError as exc:
        raise ArtifactError(f"meta-data is not valid JSON: {exc}", str(path))
    if not isinstance(value, dict):
        raise ArtifactError("meta-data must be a JSON object", str(path))
    return value


def _write(args: argparse.Namespace) -> int:
    _require_files([*args.files, *args.scripts, args.meta_data, args.key])
    info = write_artifact(
        args.output_path,
        kind=args.kind,
        name=args.artifact_name,
        device_types=args.device_types,
        files=args.files,
        payload_type=args.payload_type,
        provides=_pairs(args.provides, "--provides"),
        depends=_pairs(args.depends, "--depends"),
        clears_provides=args.clears_provides,
        no_default_clears_provides=args.no_default_clears_provides,
        no_default_software_version=args.no_default_software_version,
        software_name=args.software_name,
        software_version=args.software_version,
        software_filesystem=args.software_filesystem,
        group=args.provides_group,
        depends_artifact_name=args.artifact_name_depends,
        depends_artifact_group=args.depends_groups,
        meta_data=_meta_data(args.meta_data),
        scripts=args.scripts,
        compression=args.compression,
        signing_key=None if args.key is None else load_private_key(args.key),
    )
    print(f"{args.output_path}: wrote {info.payload_type} artifact {info.name!r} ({len(info.files)} file(s))")
    return 0
