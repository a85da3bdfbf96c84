# Shared body of the demo update interfaces (POSIX sh). Sourced by interfaces/v1/<name>, which
# sets `default_reboot` (the NeedsArtifactReboot answer when no override file exists).
#
# argv, both protocol forms:
#   seed:    <State> <WorkDir> <ComponentType> <ComponentID> [args...]
#   current: <State> <WorkDir> <ComponentType> [interface_args...]   (demo: first arg = device ID)
# so $4 is always the device ID. Device state lives in <root>/devices/<ID>/ where <root> is three
# levels above this interface (<root>/share/interfaces/v1/<name>); nothing is read from the
# environment. See demo/README.md for the control files.

# shellcheck disable=SC2154  # default_reboot is set by the sourcing interface
iface=${0##*/}
root=$(cd "$(dirname "$0")/../../.." && pwd)
state=${1-}
wd=${2-}
ctype=${3-}
id=${4-}
dev=$root/devices/$id
child=

now() { date +%s.%N; }

# One printf per line: each line is a single O_APPEND write, so parallel calls never interleave.
log_call() { printf '%s %s %s %s\n' "$(now)" "${id:--}" "${state:--}" "$1" >>"$root/calls.log"; }

die() {
    printf '%s %s %s: %s\n' "$iface" "${state:--}" "${id:--}" "$*" >&2
    exit 1
}

note() { printf '%s %s %s: %s\n' "$iface" "$state" "$id" "$*" >&2; }

first_line() {
    _line=
    [ -f "$1" ] && IFS= read -r _line <"$1"
    printf '%s' "$_line"
}

write_file() {
    printf '%s\n' "$2" >"$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"
}

running() { first_line "$dev/version"; }

# Every change of the running version is appended to timeline.log (tests replay it).
set_running() {
    _old=$(running)
    [ "$_old" = "$1" ] && return 0
    write_file "$dev/version" "$1" || die "cannot write $dev/version"
    printf '%s %s %s -> %s\n' "$(now)" "$id" "${_old:--}" "$1" >>"$root/timeline.log"
}

# Query answer: answers/<Query> verbatim if present (empty file = no answer), else the default.
answer() {
    if [ -f "$dev/answers/$1" ]; then
        cat "$dev/answers/$1"
    elif [ -n "$2" ]; then
        printf '%s\n' "$2"
    fi
}

# The effective NeedsArtifactReboot answer decides when an installed version becomes running.
reboot_mode() {
    if [ -f "$dev/answers/NeedsArtifactReboot" ]; then
        _mode=$(first_line "$dev/answers/NeedsArtifactReboot")
        printf '%s' "${_mode:-No}"
    else
        printf '%s' "$default_reboot"
    fi
}

artifact_name() {
    _name=$(first_line "$wd/header/artifact_name")
    [ -n "$_name" ] || die "header/artifact_name is missing or empty in $wd"
    printf '%s' "$_name"
}

nonempty_dir() { [ -d "$1" ] && [ -n "$(ls -A "$1")" ]; }

# Fault and timing injection, applied to every state and query.
inject() {
    if [ -f "$dev/$state.SLEEP" ]; then
        _secs=$(first_line "$dev/$state.SLEEP")
        # Backgrounded with its own stdio so a killed interface never leaves a pipe open.
        # shellcheck disable=SC2217
        sleep "${_secs:-0}" </dev/null >/dev/null 2>&1 &
        child=$!
        wait "$child"
        child=
    fi
    if [ -f "$dev/$state.FAILCOUNT" ]; then
        _left=$(first_line "$dev/$state.FAILCOUNT")
        if [ "${_left:-0}" -gt 0 ] 2>/dev/null; then
            write_file "$dev/$state.FAILCOUNT" "$((_left - 1))"
            die "injected failure ($state.FAILCOUNT, $((_left - 1)) left)"
        fi
    fi
    if [ -f "$dev/$state.FAIL" ]; then
        _why=$(first_line "$dev/$state.FAIL")
        die "injected failure ($dev/$state.FAIL)${_why:+: $_why}"
    fi
}

ignore_streams() { [ -f "$dev/Download.IGNORE-STREAMS" ] || [ -f "$dev/$state.IGNORE-STREAMS" ]; }

# Mender streams tree: stream-next yields "streams/<name>[ <size>]"; an empty read ends the list.
read_streams() {
    mkdir -p "$wd/tmp" || die "cannot create $wd/tmp"
    while :; do
        _next=$(cat "$wd/stream-next") || die "cannot read $wd/stream-next"
        [ -n "$_next" ] || break
        _path=${_next%% *}
        _size=
        [ "$_path" = "$_next" ] || _size=${_next#* }
        case $_path in
            streams/?*) ;;
            *) die "unexpected stream-next line: $_next" ;;
        esac
        _name=${_path#streams/}
        case $_name in */*) mkdir -p "$wd/tmp/${_name%/*}" ;; esac
        cat "$wd/$_path" >"$wd/tmp/$_name" || die "cannot read stream $_path"
        if [ -n "$_size" ]; then
            _got=$(wc -c <"$wd/tmp/$_name")
            [ "$_got" -eq "$_size" ] || die "stream $_path: announced $_size bytes, got $_got"
        fi
    done
}

do_download() {
    _want=$(first_line "$dev/component-type")
    if [ -n "$_want" ] && [ "$_want" != "$ctype" ]; then
        die "component type '$ctype' does not match the device's '$_want'"
    fi
    if ignore_streams; then
        note "not reading streams (IGNORE-STREAMS); payload expected in files/"
    else
        read_streams
    fi
    artifact_name >/dev/null
}

# The payload the orchestrator delivered: streamed into tmp/, or the files tree if ignored.
payload_dir() {
    if ignore_streams; then
        nonempty_dir "$wd/files" || die "streams were ignored but $wd/files/ is empty"
        printf '%s' "$wd/files"
    else
        nonempty_dir "$wd/tmp" || die "no payload: nothing was streamed into $wd/tmp/"
        printf '%s' "$wd/tmp"
    fi
}

do_install() {
    _new=$(artifact_name) || exit 1
    _src=$(payload_dir) || exit 1
    if ! { rm -rf "$dev/payload" && mkdir -p "$dev/payload" && cp -R "$_src/." "$dev/payload/"; }; then
        die "cannot copy the payload into $dev/payload"
    fi
    # A re-run (resume) of the same install keeps the original rollback target.
    if ! [ -f "$dev/previous" ] || [ "$(first_line "$dev/pending")" != "$_new" ]; then
        write_file "$dev/previous" "$(running)"
    fi
    write_file "$dev/pending" "$_new"
    case $(reboot_mode) in
        Yes | Automatic) note "installed $_new, active after reboot" ;;
        *) set_running "$_new" ;;
    esac
}

need_pending() {
    [ -f "$dev/pending" ] || die "$1: no pending version (no ArtifactInstall/ArtifactRollback before)"
    first_line "$dev/pending"
}

# Automatic reboots are the host's; the simulation applies them when the Verify state runs.
boot_into_pending_if_automatic() {
    [ "$(reboot_mode)" = Automatic ] || return 0
    set_running "$(first_line "$dev/pending")"
}

do_verify() {
    _want=$(need_pending "$state") || exit 1
    boot_into_pending_if_automatic
    _run=$(running)
    [ "$_run" = "$_want" ] || die "running '$_run', expected '$_want'"
}

# A payload line `demo-fails: <State> <ID>` (the demo's v3 bundle carries one for R456) makes that
# state fail on that device: the failure travels in the artifact, as a real defect would.
payload_fault() {
    [ -d "$dev/payload" ] || return 0
    if grep -rqsx "demo-fails: $state $id" "$dev/payload"; then
        die "the installed payload fails $state on $id (its line 'demo-fails: $state $id')"
    fi
}

do_commit() {
    payload_fault
    if [ -f "$dev/pending" ]; then
        _want=$(first_line "$dev/pending")
        _run=$(running)
        [ "$_run" = "$_want" ] || die "cannot commit: running '$_run' but installed '$_want' is not active"
        rm -f "$dev/pending"
    elif ! [ -f "$dev/previous" ]; then
        die "nothing to commit"
    fi
    # previous stays until Cleanup: a later Component may still fail and roll this one back.
}

do_rollback() {
    if ! [ -f "$dev/previous" ]; then
        note "nothing to roll back"
        return 0
    fi
    _old=$(first_line "$dev/previous")
    case $(reboot_mode) in
        Yes | Automatic) write_file "$dev/pending" "$_old" ;;
        *) rm -f "$dev/pending" && set_running "$_old" ;;
    esac
}

# The simulated reboot of the device: it comes up running the pending version.
do_reboot() {
    _want=$(need_pending "$state") || exit 1
    set_running "$_want"
}

do_verify_rollback() {
    [ -f "$dev/pending" ] && boot_into_pending_if_automatic
    if [ -f "$dev/previous" ]; then
        _want=$(first_line "$dev/previous")
        _run=$(running)
        [ "$_run" = "$_want" ] || die "running '$_run', expected rolled-back '$_want'"
    fi
}

do_provides() {
    if [ -f "$dev/answers/Provides" ]; then
        cat "$dev/answers/Provides"
        return
    fi
    printf 'rootfs-image.%s.version=%s\n' "$iface" "$(running)"
    if [ -f "$dev/extra-provides" ]; then
        cat "$dev/extra-provides"
    fi
}

do_inventory() {
    if [ -f "$dev/answers/Inventory" ]; then
        cat "$dev/answers/Inventory"
        return
    fi
    printf 'device_id=%s\nversion=%s\n' "$id" "$(running)"
}

dispatch() {
    case $state in
        Identity) answer Identity "id=$id" ;;
        Provides) do_provides ;;
        Inventory) do_inventory ;;
        NeedsArtifactReboot) answer NeedsArtifactReboot "$default_reboot" ;;
        SupportsRollback) answer SupportsRollback Yes ;;
        NeedsUnpackedArtifact | ProvidePayloadFileSizes) answer "$state" "" ;;
        Download | DownloadWithFileSizes) do_download ;;
        ArtifactInstall) do_install ;;
        ArtifactReboot | ArtifactRollbackReboot) do_reboot ;;
        ArtifactVerifyReboot) do_verify ;;
        ArtifactCommit) do_commit ;;
        ArtifactRollback) do_rollback ;;
        ArtifactVerifyRollbackReboot) do_verify_rollback ;;
        ArtifactFailure) note "failure handled (nothing to undo)" ;;
        Cleanup) rm -f "$dev/previous" "$dev/pending" ;;
    esac
}

case $state in
    Identity | Provides | Inventory | NeedsArtifactReboot | SupportsRollback | NeedsUnpackedArtifact | \
        ProvidePayloadFileSizes | Download | DownloadWithFileSizes | ArtifactInstall | ArtifactReboot | \
        ArtifactVerifyReboot | ArtifactCommit | ArtifactRollback | ArtifactRollbackReboot | \
        ArtifactVerifyRollbackReboot | ArtifactFailure | Cleanup) ;;
    *)
        # Unknown state or query: protocol says print nothing and succeed.
        log_call start
        log_call "end 0"
        exit 0
        ;;
esac

on_exit() {
    trap - EXIT
    log_call "end $1"
    exit "$1"
}

log_call start
trap 'on_exit $?' EXIT
trap '[ -z "$child" ] || kill "$child" 2>/dev/null; exit 143' TERM
trap '[ -z "$child" ] || kill "$child" 2>/dev/null; exit 130' INT
trap '[ -z "$child" ] || kill "$child" 2>/dev/null; exit 129' HUP

[ -n "$id" ] || die "no component/device ID in argv (\$4)"
[ -d "$dev" ] || die "unknown device '$id' (no $dev)"
: >"$dev/$state.STARTED"
printf '%s\n' "$@" >"$dev/$state.ARGV"
inject
dispatch
