#!/usr/bin/env bash
# Makes the offline base images the examples build on, with `kiln import` — there is no
# Docker Hub here. Each image is stored in kiln's local store under its usual name, so a
# Dockerfile's `FROM busybox` finds it without any registry.
#
#   examples/bases.sh busybox     busybox:latest from Debian's busybox-static
#   examples/bases.sh debian      debian:bookworm-slim (mmdebstrap --variant=minbase, merged-usr,
#                                 docs/man/locales excluded like the official slim image)
#   examples/bases.sh python      python:3.11-slim equivalent: bookworm-slim + Debian's python3,
#                                 python3-venv, python3-pip; /usr/local/bin/python -> python3,
#                                 ENV PATH, LANG=C.UTF-8, CMD ["python3"]
#   examples/bases.sh all         all of the above
#
# The Debian root filesystems are cached as tarballs under $KILN_EXAMPLES_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/kiln-examples), keyed by mirror and package list, so a rerun only
# re-imports them (seconds). Delete the cache directory to refresh the packages.
#
# Environment: KILN (the kiln binary, default: `kiln` on PATH), KILN_ROOT (the store),
# SOURCE_DATE_EPOCH (fixed timestamps; default 0 so the images are reproducible),
# DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR (default: the ones in this machine's
# /etc/apt/sources.list*, else deb.debian.org).
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

CACHE=${KILN_EXAMPLES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln-examples}
SUITE=bookworm

# The first apt source URI on this machine whose path ends in /$1 (debian or debian-security),
# from deb822 .sources files ("URIs: ...") or one-line .list files ("deb URI suite ...").
host_mirror() {
  local want=$1 f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    while read -r uri; do
      case ${uri%/} in
        */"$want") echo "${uri%/}"; return 0 ;;
      esac
    done < <(sed -nE -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' "$f" | tr ' ' '\n')
  done
  return 1
}

DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(host_mirror debian || echo http://deb.debian.org/debian)}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(host_mirror debian-security || echo http://deb.debian.org/debian-security)}

# Like the official slim images (debuerreotype's slimify): no docs, man pages or locales.
SLIM_DPKG_OPTS=(
  'path-exclude=/usr/share/doc/*'
  'path-include=/usr/share/doc/*/copyright'
  'path-exclude=/usr/share/groff/*'
  'path-exclude=/usr/share/info/*'
  'path-exclude=/usr/share/linda/*'
  'path-exclude=/usr/share/lintian/*'
  'path-exclude=/usr/share/locale/*'
  'path-include=/usr/share/locale/locale.alias'
  'path-exclude=/usr/share/man/*'
)

# debian_rootfs NAME [PACKAGES...]: prints the path of a cached rootfs tarball for bookworm
# minbase plus PACKAGES, running mmdebstrap (as root) when the cache has none.
debian_rootfs() {
  local name=$1; shift
  local includes
  includes=$(IFS=,; echo "$*")
  local key
  key=$(printf '%s\n' "v2" "$SUITE" "$DEBIAN_MIRROR" "$DEBIAN_SECURITY_MIRROR" "$includes" "${SLIM_DPKG_OPTS[@]}" \
    | sha256sum | cut -c1-16)
  local tarball=$CACHE/$name-$SUITE-$key.tar
  if [ -s "$tarball" ]; then
    echo "$tarball"
    return 0
  fi
  mkdir -p "$CACHE"
  # One bootstrap at a time per image (tests run bases.sh concurrently): wait for the lock,
  # then look again — another process may have made the tarball meanwhile.
  local lock_fd
  exec {lock_fd}>"$CACHE/$name.lock"
  flock "$lock_fd"
  if [ -s "$tarball" ]; then
    exec {lock_fd}>&-
    echo "$tarball"
    return 0
  fi
  command -v mmdebstrap >/dev/null || die "mmdebstrap not found: apt-get install mmdebstrap"
  # merged-usr via debootstrap's symlinks (the hook), not the usrmerge package (pulls perl).
  local args=(--variant=minbase --format=tar --skip=output/dev
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --aptopt='Acquire::Retries "3"')
  local opt
  for opt in "${SLIM_DPKG_OPTS[@]}"; do args+=(--dpkgopt="$opt"); done
  [ -z "$includes" ] || args+=(--include="$includes")
  # The apt configuration of the official images: no cached .debs, no translations.
  # The hooks are shell snippets mmdebstrap runs with the root as $1: single quotes on purpose.
  # shellcheck disable=SC2016
  args+=(--customize-hook='printf "%s\n" "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" "APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" "Dir::Cache::pkgcache \"\";" "Dir::Cache::srcpkgcache \"\";" > "$1/etc/apt/apt.conf.d/docker-clean"'
    --customize-hook='echo "Acquire::Languages \"none\";" > "$1/etc/apt/apt.conf.d/docker-no-languages"'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/etc/machine-id "$1"/etc/hostname "$1"/etc/resolv.conf'
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED'
    --customize-hook='if [ -x "$1/usr/bin/python3" ]; then for p in python:python3 python3:python3 pip:pip3 pip3:pip3 pydoc:pydoc3 python-config:python3-config; do [ -e "$1/usr/bin/${p#*:}" ] && ln -sf "/usr/bin/${p#*:}" "$1/usr/local/bin/${p%%:*}"; done; true; fi')
  echo "bases.sh: mmdebstrap $SUITE ${includes:+(+ $includes) }from $DEBIAN_MIRROR" >&2
  local log=$CACHE/$name.log
  # Timestamps: the build time (reproducibility comes from the cache, not from the mirror).
  if ! env -u SOURCE_DATE_EPOCH mmdebstrap "${args[@]}" "$SUITE" "$tarball.tmp" \
      "deb $DEBIAN_MIRROR $SUITE main" \
      "deb $DEBIAN_MIRROR $SUITE-updates main" \
      "deb $DEBIAN_SECURITY_MIRROR $SUITE-security main" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$tarball.tmp"
    die "mmdebstrap failed (full log: $log)"
  fi
  mv "$tarball.tmp" "$tarball"
  exec {lock_fd}>&-
  echo "$tarball"
}

make_debian() {
  local tarball
  tarball=$(debian_rootfs debian)
  "$KILN" import "$tarball" -t debian:bookworm-slim --change 'CMD ["bash"]' >/dev/null
  echo "bases.sh: debian:bookworm-slim ($("$KILN" inspect debian:bookworm-slim | jq -r .Id))"
}

make_python() {
  local tarball
  tarball=$(debian_rootfs python python3 python3-venv python3-pip)
  local version
  # (Every reader consumes its whole input: an early exit would SIGPIPE tar, and pipefail
  # would turn that into exit 141.)
  version=$(tar -tf "$tarball" | sed -nE 's|^(\./)?usr/bin/python(3\.[0-9]+)$|\2|p' | sort -V | tail -n1)
  [ -n "$version" ] || die "no usr/bin/python3.X in $tarball"
  # The full upstream version (ENV PYTHON_VERSION=3.11.2, like the official image's), from dpkg.
  local full
  full=$(tar -xOf "$tarball" ./var/lib/dpkg/status 2>/dev/null |
    awk -v p="python$version" '$1 == "Package:" { pkg = $2 } !done && pkg == p && $1 == "Version:" { sub(/-.*/, "", $2); print $2; done = 1 }')
  "$KILN" import "$tarball" -t "python:$version-slim" \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PYTHON_VERSION=${full:-$version}" \
    --change 'CMD ["python3"]' >/dev/null
  echo "bases.sh: python:$version-slim ($("$KILN" inspect "python:$version-slim" | jq -r .Id))"
}

[ $# -gt 0 ] || set -- busybox
for base in "$@"; do
  case $base in
    busybox) make_busybox ;;
    debian) make_debian ;;
    python) make_python ;;
    all) make_busybox; make_debian; make_python ;;
    *) die "unknown base image '$base' (known: busybox, debian, python, all)" ;;
  esac
done
