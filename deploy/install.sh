#!/usr/bin/env bash
# Installs the appliance on a Debian-based gateway, or upgrades it: run it again after getting
# a newer source (docs/install.md). As root. Safe to run again: what is already right is left
# alone, and the end says what changed.
#
#   app        <prefix>/app (a copy of this source tree) and <prefix>/venv (runtime requirements)
#   datastore  <datastore> (real dir, on /data: an A/B root file system update keeps it), with the
#              symlink <var-lib-link> -> <datastore>; root:<user> 2770 (setgid)
#   conf       <conf-dir>/orchestrator.env (written once), secret_key (0640, once)
#   interfaces <data-dir>/interfaces/v1/
#   CLI        <bin-dir>/mender-orchestrator
#   units      <systemd-dir>/mender-orchestrator{.target,-migrate,-resume,-worker,-web.service}
#   nginx      <nginx-dir>/sites-available/mender-orchestrator.conf (enabled when the cert is there)
#
# --root DIR puts all of it under DIR, and the paths written into the units, the wrapper and
# the environment file are the DIR-prefixed ones, so the result runs in place (the tests do).
set -euo pipefail
umask 022

usage() {
  cat >&2 <<'EOT'
usage: deploy/install.sh [--root DIR] [--prefix DIR] [--datastore DIR] [--var-lib-link PATH]
         [--conf-dir DIR] [--data-dir DIR] [--bin-dir DIR] [--systemd-dir DIR] [--nginx-dir DIR]
         [--user NAME] [--source DIR] [--python PYTHON] [--no-systemctl] [--no-user]
EOT
  exit 2
}
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

# shellcheck source=paths.sh
. "$(dirname "$(readlink -f "$0")")/paths.sh"
source_dir="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)" python=python3 make_user=true
while [ $# -gt 0 ]; do
  opt="$1" val=""
  case "$opt" in
    --no-systemctl) use_systemctl=false; shift; continue ;;
    --no-user) make_user=false; shift; continue ;;
    -h | --help) usage ;;
    --*=*) val="${opt#*=}" opt="${opt%%=*}"; shift ;;
    --*) [ $# -ge 2 ] || usage; val="$2"; shift 2 ;;
    *) usage ;;
  esac
  path_option "$opt" "$val" && continue
  case "$opt" in
    --source) source_dir="$(cd "$val" && pwd)" ;;
    --python) python="$val" ;;
    *) usage ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "run me as root (I create a system user, /opt, /data and units)"
systemctl_decide
[ -f "$source_dir/manage.py" ] && [ -f "$source_dir/deploy/requirements.txt" ] ||
  die "$source_dir is not the orchestrator's source tree (no manage.py, deploy/requirements.txt)"

# Every path as written into files: DIR-prefixed under --root.
PREFIX="$root$prefix" APP="$root$prefix/app" VENV="$root$prefix/venv"
DATASTORE="$root$datastore" VAR_LIB_LINK="$root$var_lib_link" CONF_DIR="$root$conf_dir"
DATA_DIR="$root$data_dir" BIN="$root$bin_dir/mender-orchestrator" SYSTEMD_DIR="$root$systemd_dir"
NGINX_DIR="$root$nginx_dir"
changed=()
note() { changed+=("$1"); say "$1"; }

# ----- Python -----------------------------------------------------------------------------------
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
  die "needs Python >= 3.11 as '$python' (Debian 12: apt-get install python3)"
"$python" -c 'import ensurepip, venv' 2>/dev/null ||
  die "needs Python's venv module (Debian: apt-get install python3-venv)"

# ----- the service user and group -----------------------------------------------------------------
passwd_db() { if [ -n "$root" ]; then cat "$root/etc/$1"; else getent "$1"; fi; }
id_of() { passwd_db "$1" | awk -F: -v n="$2" '$1 == n { print $3; exit }'; }
if $make_user && [ -z "$(id_of passwd "$user")" ]; then
  useradd_root=()
  if [ -n "$root" ]; then
    [ -e "$root/etc/passwd" ] || die "--root $root has no etc/passwd: create one, or pass --no-user"
    useradd_root=(--prefix "$root")
  fi
  [ -n "$(id_of group "$user")" ] || groupadd "${useradd_root[@]}" --system "$user"
  useradd "${useradd_root[@]}" --system --gid "$user" --home-dir "$VAR_LIB_LINK" --no-create-home \
    --shell /usr/sbin/nologin --comment "Mender update orchestrator" "$user"
  note "created the system user and group $user"
fi
# Numeric ids from here on: under --root the names are not known to this machine's NSS.
uid="$(id_of passwd "$user")" gid="$(id_of group "$user")"
if [ -z "$uid" ] || [ -z "$gid" ]; then
  $make_user && die "no user or group $user after creating it"
  say "warning: no user/group $user (--no-user): files get group root until it exists; create it and run me again"
  uid=0 gid=0
fi

# ----- the app: a copy of the source tree, swapped in whole ---------------------------------------
copy_tree() { # $1 -> $2, without what a checkout has besides the source
  mkdir -p "$2"
  tar -C "$1" -cf - --exclude=./.venv --exclude=./var --exclude=./.git --exclude=./tests \
    --exclude=./bench --exclude=./.ci --exclude=./demo/build --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.hypothesis \
    --exclude=.schemathesis --exclude='*.pyc' . | tar -C "$2" -xf -
}
mkdir -p "$PREFIX"
staging="$PREFIX/.app.new"
rm -rf "$staging"
copy_tree "$source_dir" "$staging"
app_changed=false
if [ -d "$APP" ] && diff -r -q --exclude=__pycache__ "$APP" "$staging" >/dev/null 2>&1; then
  rm -rf "$staging"
else
  app_changed=true
fi

# ----- the virtual environment: the runtime requirements, installed when they changed ---------------
venv_changed=false
[ -x "$VENV/bin/python" ] || { "$python" -m venv "$VENV"; venv_changed=true; }
stamp="$VENV/.requirements.sha256"
want="$(cat "$source_dir/deploy/requirements.txt" <("$VENV/bin/python" -V) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/pip" install --disable-pip-version-check -q -r "$source_dir/deploy/requirements.txt"
  echo "$want" > "$stamp"
  note "installed the runtime requirements into $VENV"
  venv_changed=true
fi

# An upgrade: stop the services before the code under them changes (the worker's warm shutdown
# lets the deployment in progress go on until TimeoutStopSec); the migrate unit's job is done below.
units=(mender-orchestrator-web.service mender-orchestrator-worker.service)
was_running=false
if $use_systemctl && { $app_changed || $venv_changed; } && systemctl is-active --quiet "${units[@]}"; then
  was_running=true
  say "stopping the web server and the worker for the upgrade"
  systemctl stop "${units[@]}"
fi
if $app_changed; then
  # Compiled once here: the services cannot write into the app (ProtectSystem), and the CLI
  # starts faster (show-provides runs on every inventory poll).
  "$VENV/bin/python" -m compileall -q "$staging" >/dev/null
  # <prefix>/app is a symlink to app.<n>: renaming a new link over it swaps the whole tree at
  # once, so a crash of this script leaves the old app or the new one, never a mix.
  n=1
  while [ -e "$PREFIX/app.$n" ]; do n=$((n + 1)); done
  mv "$staging" "$PREFIX/app.$n"
  old="$(readlink "$APP" 2>/dev/null || true)"
  ln -sfn "app.$n" "$PREFIX/.app.link"
  mv -T "$PREFIX/.app.link" "$APP"
  [ -n "$old" ] && [ "$old" != "app.$n" ] && rm -rf "${PREFIX:?}/$old"
  note "installed the app into $PREFIX/app.$n ($APP)"
fi

# ----- the data store on /data, and the symlink from /var/lib -------------------------------------
mkdir -p "$DATASTORE" "$(dirname "$VAR_LIB_LINK")"
if [ -d "$VAR_LIB_LINK" ] && [ ! -L "$VAR_LIB_LINK" ]; then
  # A data store of an older install, kept on the root file system: move it to /data once.
  if [ -n "$(ls -A "$VAR_LIB_LINK")" ]; then
    [ -z "$(ls -A "$DATASTORE")" ] ||
      die "both $VAR_LIB_LINK (a directory) and $DATASTORE hold data: keep one of them (move or back up the other away), then run me again"
    find "$VAR_LIB_LINK" -mindepth 1 -maxdepth 1 -exec mv -t "$DATASTORE" {} +
    note "moved the data store from $VAR_LIB_LINK to $DATASTORE"
  fi
  rmdir "$VAR_LIB_LINK"
fi
if [ "$(readlink "$VAR_LIB_LINK" 2>/dev/null)" != "$DATASTORE" ]; then
  [ ! -e "$VAR_LIB_LINK" ] || [ -L "$VAR_LIB_LINK" ] || die "$VAR_LIB_LINK exists and is not a directory or symlink"
  ln -sfn "$DATASTORE" "$VAR_LIB_LINK"
  note "linked $VAR_LIB_LINK -> $DATASTORE"
fi
# root:<group>, folders 2770 (setgid: what root creates keeps the group, so the web server's
# user can use it). A data store not in that layout yet (new, or an older single-user one) is
# brought into it once; afterwards the services' UMask 0007 and the setgid bit keep it so.
if [ "$(stat -c '%u:%g %a' "$DATASTORE")" != "0:$gid 2770" ]; then
  chown root:"$gid" "$DATASTORE"
  chmod 2770 "$DATASTORE"
  find "$DATASTORE" -xdev ! -type l ! -group "$gid" -exec chgrp "$gid" {} +
  find "$DATASTORE" -xdev -type d ! -perm -2770 -exec chmod u+rwx,g+rwxs {} +
  find "$DATASTORE" -xdev -type f -perm -u+r ! -perm -g+r -exec chmod g+r {} +
  # Keys stay read-only to the group (secret_read refuses more); the rest the web writes too.
  find "$DATASTORE" -xdev -type f -perm -u+w ! -perm -g+w ! -name '*.pem' ! -name hook-secret \
    ! -name secret_key -exec chmod g+w {} +
  note "gave $DATASTORE to root:$user, folders 2770"
fi

# ----- configuration ---------------------------------------------------------------------------
install -d -m 0750 -o root -g "$gid" "$CONF_DIR"
install -d -m 0755 "$DATA_DIR/interfaces/v1"
if [ ! -e "$CONF_DIR/orchestrator.env" ]; then
  # The example's default paths, as this install has them (DIR-prefixed under --root).
  sed -e "s|/var/lib/mender-orchestrator|$VAR_LIB_LINK|g" -e "s|/etc/mender-orchestrator|$CONF_DIR|g" \
    -e "s|/usr/share/mender-orchestrator|$DATA_DIR|g" "$source_dir/deploy/orchestrator.env.example" \
    > "$CONF_DIR/.orchestrator.env.new"
  chown root:"$gid" "$CONF_DIR/.orchestrator.env.new"
  chmod 0640 "$CONF_DIR/.orchestrator.env.new"
  mv "$CONF_DIR/.orchestrator.env.new" "$CONF_DIR/orchestrator.env"
  note "wrote $CONF_DIR/orchestrator.env (edit ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS)"
fi
if [ ! -e "$CONF_DIR/secret_key" ]; then
  (umask 077 && "$python" -c 'import secrets; print(secrets.token_urlsafe(50))' > "$CONF_DIR/.secret_key.new")
  chown root:"$gid" "$CONF_DIR/.secret_key.new"
  chmod 0640 "$CONF_DIR/.secret_key.new"
  mv "$CONF_DIR/.secret_key.new" "$CONF_DIR/secret_key"
  note "created $CONF_DIR/secret_key"
fi

# ----- files rendered from deploy/ -------------------------------------------------------------------
render() { # template -> stdout, the @NAMES@ replaced by this install's paths
  sed -e "s|@APP@|$APP|g" -e "s|@VENV@|$VENV|g" -e "s|@BIN@|$BIN|g" -e "s|@CONF_DIR@|$CONF_DIR|g" \
    -e "s|@DATASTORE@|$DATASTORE|g" -e "s|@DATASTORE_PARENT@|$(dirname "$DATASTORE")|g" \
    -e "s|@USER@|$user|g" -e "s|@GROUP@|$user|g" "$1"
}
units_changed=false
put() { # put TEMPLATE DEST MODE: write DEST when its content differs
  local new
  new="$(dirname "$2")/.$(basename "$2").new"
  mkdir -p "$(dirname "$2")"
  render "$1" > "$new"
  chmod "$3" "$new"
  if cmp -s "$new" "$2"; then
    rm -f "$new"
  else
    mv "$new" "$2"
    note "wrote $2"
    case "$2" in "$SYSTEMD_DIR"/*) units_changed=true ;; esac
  fi
}
put "$source_dir/deploy/mender-orchestrator.in" "$BIN" 0755
all_units=(mender-orchestrator.target mender-orchestrator-migrate.service
  mender-orchestrator-resume.service "${units[@]}")
for unit in "${all_units[@]}"; do
  put "$source_dir/deploy/systemd/$unit" "$SYSTEMD_DIR/$unit" 0644
done
site="$NGINX_DIR/sites-available/mender-orchestrator.conf"
put "$source_dir/deploy/nginx/mender-orchestrator.conf" "$site" 0644
if [ -f "$CONF_DIR/tls/cert.pem" ] && [ -f "$CONF_DIR/tls/key.pem" ] &&
  [ ! -e "$NGINX_DIR/sites-enabled/mender-orchestrator.conf" ]; then
  mkdir -p "$NGINX_DIR/sites-enabled"
  ln -s "$site" "$NGINX_DIR/sites-enabled/mender-orchestrator.conf"
  note "enabled the nginx site"
elif [ ! -e "$NGINX_DIR/sites-enabled/mender-orchestrator.conf" ]; then
  say "nginx site not enabled yet: put the certificate in $CONF_DIR/tls/{cert,key}.pem and run me again"
fi

# ----- database, static files, first admin ------------------------------------------------------------
# As root with the service group and umask 007, through the wrapper: the same environment the
# units have. `migrate` takes a backup first when migrations are pending on a database that has
# tables, and says where it went.
# Backs up the data store first when migrations are pending (docs/operations.md).
"$BIN" migrate
# Content-hashed copies for WhiteNoise; an unchanged file is not copied again.
"$BIN" --manage collectstatic --noinput --verbosity 0
# Prints the generated password of the first admin once (nothing when an admin exists).
"$BIN" user ensure-admin

# ----- systemd -------------------------------------------------------------------------------------------
if $use_systemctl; then
  $units_changed && systemctl daemon-reload
  systemctl enable --quiet mender-orchestrator.target "${all_units[@]:1}"
  if $was_running || { $units_changed && systemctl is-active --quiet "${units[@]}"; }; then
    systemctl restart "${units[@]}"
    note "restarted the web server and the worker"
  elif ! systemctl is-active --quiet mender-orchestrator.target; then
    systemctl start mender-orchestrator.target
    note "started mender-orchestrator.target"
  fi
  if [ -e "$NGINX_DIR/sites-enabled/mender-orchestrator.conf" ] && systemctl is-active --quiet nginx; then
    nginx -t -q && systemctl reload nginx
  fi
else
  say "not calling systemctl (--no-systemctl, or systemd is not running this machine)"
fi

if [ ${#changed[@]} -eq 0 ]; then
  say "nothing to change: the install at $PREFIX is up to date"
else
  if [ ${#changed[@]} -eq 1 ]; then say "done (1 change)"; else say "done (${#changed[@]} changes)"; fi
fi
