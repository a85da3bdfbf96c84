# The path options install.sh and uninstall.sh share (sourced by both; not run on its own):
# defaults, `path_option OPT VALUE` (0 when OPT is one of them), and whether to call systemctl.
# shellcheck shell=bash
root="" prefix=/opt/mender-orchestrator datastore=/data/mender-orchestrator
var_lib_link=/var/lib/mender-orchestrator conf_dir=/etc/mender-orchestrator
data_dir=/usr/share/mender-orchestrator bin_dir=/usr/bin systemd_dir=/etc/systemd/system
nginx_dir=/etc/nginx user=mender-orchestrator use_systemctl=auto

path_option() {
  case "$1" in
    --root) root="${2%/}" ;;
    --prefix) prefix="$2" ;;
    --datastore) datastore="$2" ;;
    --var-lib-link) var_lib_link="$2" ;;
    --conf-dir) conf_dir="$2" ;;
    --data-dir) data_dir="$2" ;;
    --bin-dir) bin_dir="$2" ;;
    --systemd-dir) systemd_dir="$2" ;;
    --nginx-dir) nginx_dir="$2" ;;
    --user) user="$2" ;;
    *) return 1 ;;
  esac
}

# auto: only on the machine itself (no --root) when systemd runs it (not in a container or chroot).
systemctl_decide() {
  if [ "$use_systemctl" = auto ]; then
    use_systemctl=false
    [ -z "$root" ] && [ -d /run/systemd/system ] && [ "$(ps -p 1 -o comm=)" = systemd ] && use_systemctl=true
  fi
  return 0
}
