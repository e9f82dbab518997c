#!/usr/bin/env bash
# Makes the offline base images the examples build on, with `kiln import` — there is no
# Docker Hub here. Each image is stored in kiln's local store under its usual name, so a
# Dockerfile's `FROM busybox` finds it without any registry.
#
#   examples/bases.sh busybox     busybox:latest from Debian's busybox-static
#
# Environment: KILN (the kiln binary, default: `kiln` on PATH), KILN_ROOT (the store),
# SOURCE_DATE_EPOCH (fixed timestamps; default 0 so the images are reproducible).
# With internet access none of this is needed: `FROM busybox` is then pulled from Docker Hub.
set -euo pipefail

KILN=${KILN:-kiln}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}

die() { echo "bases.sh: $*" >&2; exit 1; }

make_busybox() {
  local busybox=${BUSYBOX:-/bin/busybox}
  [ -x "$busybox" ] || die "no static busybox at $busybox: apt-get install busybox-static"
  file_type=$(head -c 4 "$busybox" | od -An -c | tr -d ' ')
  [ "$file_type" = 177ELF ] || die "$busybox is not an ELF binary"
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  local root=$tmp/rootfs
  mkdir -p "$root"/{bin,etc,home,root,tmp,var/spool/mail,var/www,usr/sbin}
  chmod 1777 "$root/tmp"
  chmod 700 "$root/root"
  cp "$busybox" "$root/bin/busybox"
  # Every applet in /bin, like the official image.
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
PASSWD
  cat >"$root/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:8:
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
GROUP
  cat >"$root/etc/shadow" <<'SHADOW'
root:*::0:::::
nobody:*::0:::::
SHADOW
  chmod 600 "$root/etc/shadow"
  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  "$KILN" import "$root" -t busybox:latest --change 'CMD ["sh"]' >/dev/null
  echo "bases.sh: busybox:latest ($("$KILN" inspect busybox:latest | jq -r .Id))"
}

[ $# -gt 0 ] || set -- busybox
for base in "$@"; do
  case $base in
    busybox) make_busybox ;;
    *) die "unknown base image '$base' (known: busybox)" ;;
  esac
done
