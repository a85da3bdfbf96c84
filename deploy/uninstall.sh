#!/usr/bin/env bash
# Removes what deploy/install.sh installed: the units (stopped and disabled first), the nginx
# site, the command line wrapper and <prefix>. KEEPS the data store (the history, the artifacts,
# the database), the /var/lib symlink, the configuration and the service user, so installing
# again carries on where this left off; --purge removes those too (asks first, or --yes).
# The same path options as install.sh (--root DIR for a tree installed with --root DIR).
set -euo pipefail

usage() {
  cat >&2 <<'EOT'
usage: deploy/uninstall.sh [--root DIR] [--prefix DIR] [--datastore DIR] [--var-lib-link PATH]
         [--conf-dir DIR] [--data-dir DIR] [--bin-dir DIR] [--systemd-dir DIR] [--nginx-dir DIR]
         [--user NAME] [--no-systemctl] [--purge [--yes]]
EOT
  exit 2
}
die() { echo "uninstall.sh: $*" >&2; exit 1; }
say() { echo "uninstall.sh: $*"; }

# shellcheck source=paths.sh
. "$(dirname "$(readlink -f "$0")")/paths.sh"
purge=false yes=false
while [ $# -gt 0 ]; do
  opt="$1" val=""
  case "$opt" in
    --no-systemctl) use_systemctl=false; shift; continue ;;
    --purge) purge=true; shift; continue ;;
    --yes) yes=true; shift; continue ;;
    -h | --help) usage ;;
    --*=*) val="${opt#*=}" opt="${opt%%=*}"; shift ;;
    --*) [ $# -ge 2 ] || usage; val="$2"; shift 2 ;;
    *) usage ;;
  esac
  path_option "$opt" "$val" || usage
done
[ "$(id -u)" -eq 0 ] || die "run me as root"
systemctl_decide
if $purge && ! $yes; then
  [ -t 0 ] || die "--purge deletes the data store and the configuration: confirm with --yes"
  read -r -p "Delete $root$datastore (every deployment's history, the database, the artifacts) and $root$conf_dir? [y/N] " answer
  [ "$answer" = y ] || [ "$answer" = Y ] || die "nothing removed"
fi

units=(mender-orchestrator-web.service mender-orchestrator-worker.service
  mender-orchestrator-resume.service mender-orchestrator-migrate.service mender-orchestrator.target)
if $use_systemctl; then
  # The worker's warm shutdown lets the deployment in progress go on until its TimeoutStopSec.
  systemctl disable --now --quiet "${units[@]}" 2>/dev/null || true
fi
for unit in "${units[@]}"; do rm -f "$root$systemd_dir/$unit"; done
$use_systemctl && systemctl daemon-reload
rm -f "$root$nginx_dir/sites-enabled/mender-orchestrator.conf" "$root$nginx_dir/sites-available/mender-orchestrator.conf"
if $use_systemctl && systemctl is-active --quiet nginx; then systemctl reload nginx; fi
rm -f "$root$bin_dir/mender-orchestrator"
rm -rf "${root}${prefix:?}"
say "removed the units, the nginx site, $root$bin_dir/mender-orchestrator and $root$prefix"

if ! $purge; then
  say "kept the data store $root$datastore (linked from $root$var_lib_link), $root$conf_dir," \
    "$root$data_dir and the user $user (--purge removes them)"
  exit 0
fi
rm -rf "${root}${datastore:?}" "$root$(dirname "$datastore")/nginx-client-body" "$root$conf_dir"
[ -L "$root$var_lib_link" ] && rm -f "$root$var_lib_link"
# The interfaces are the device maker's, not ours: only an empty folder goes.
rmdir "$root$data_dir/interfaces/v1" "$root$data_dir/interfaces" "$root$data_dir" 2>/dev/null || true
if [ -n "$root" ]; then
  [ -e "$root/etc/passwd" ] && userdel --prefix "$root" "$user" 2>/dev/null || true
  groupdel --prefix "$root" "$user" 2>/dev/null || true
else
  userdel "$user" 2>/dev/null || true
  groupdel "$user" 2>/dev/null || true
fi
say "purged the data store, the configuration and the user $user"
