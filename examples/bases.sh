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
#   examples/bases.sh golang      golang:1.19 equivalent: bookworm-slim + Debian's golang-go and
#                                 ca-certificates; GOPATH=/go (mode 1777), WORKDIR /go, ENV PATH
#   examples/bases.sh node        node:18 equivalent: bookworm-slim + Debian's nodejs and npm; user
#                                 `node` (uid/gid 1000), CMD ["node"]
#   examples/bases.sh nginx       nginx:1.22 equivalent: bookworm-slim + Debian's nginx-light and curl;
#                                 the official image's conf.d/default.conf serving
#                                 /usr/share/nginx/html, logs to stdout/stderr, EXPOSE 80,
#                                 STOPSIGNAL SIGQUIT, CMD ["nginx", "-g", "daemon off;"]
#   examples/bases.sh rust        rust:1.96 (and rust:1) equivalent: bookworm-slim + Debian's
#                                 rustc-web and cargo-web (bookworm's current toolchain; `rustc`
#                                 is 1.63) and ca-certificates; CARGO_HOME=/usr/local/cargo, PATH
#   examples/bases.sh all         all of the above
#
# The golang, node and rust bases also trust the CA certificates of the host's bundle
# ($HOST_CA_BUNDLE, default /etc/ssl/certs/ca-certificates.crt) that Debian's bundle lacks,
# installed as local CAs (/usr/local/share/ca-certificates/host-ca-N.crt, update-ca-certificates),
# so `npm ci` and `cargo build` reach their registries from RUN behind a TLS-intercepting proxy.
# On a host with the stock bundle nothing is added. HOST_CA_BUNDLE=/dev/null turns it off.
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

# Customize hooks (shell snippets run with the root filesystem as $1) the next debian_rootfs
# call adds after the common ones; part of the cache key. Set by the make_* functions.
ROOTFS_HOOKS=()

HOST_CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

# add_hook NAME [ARGS...] <<'HOOK' ... HOOK: writes the hook script on stdin to the cache and adds
# `sh SCRIPT ROOT ARGS...` to ROOTFS_HOOKS, with the script's digest (so editing a hook
# rebuilds the rootfs). ARGS must not contain quotes.
add_hook() {
  local name=$1; shift
  mkdir -p "$CACHE/hooks"
  local script=$CACHE/hooks/$name.sh
  cat >"$script.tmp.$$"
  mv "$script.tmp.$$" "$script"
  local arg args=""
  for arg in "$@"; do args+=" '$arg'"; done
  ROOTFS_HOOKS+=("sh '$script' \"\$1\"$args # $(sha256sum <"$script" | cut -c1-16)")
}

# with_host_cas: adds the host bundle's extra CAs (see the header) as local CAs; the image must
# include ca-certificates. The bundle's digest is part of the hook, so of the cache key.
with_host_cas() {
  [ -s "$HOST_CA_BUNDLE" ] || return 0
  add_hook host-ca "$HOST_CA_BUNDLE" "$(sha256sum <"$HOST_CA_BUNDLE" | cut -c1-16)" <<'HOOK'
set -eu
root=$1 host_bundle=$2
image_bundle=$root/etc/ssl/certs/ca-certificates.crt
[ -s "$image_bundle" ] || { echo "host-ca hook: no $image_bundle (include ca-certificates)" >&2; exit 1; }
dir=$root/usr/local/share/ca-certificates
mkdir -p "$dir"
# The PEM blocks of the host bundle that the image's bundle lacks, one file each.
awk -v dir="$dir" '
  FNR == 1 { file++ }
  /-----BEGIN CERTIFICATE-----/ { pem = ""; inside = 1 }
  inside { pem = pem $0 "\n" }
  /-----END CERTIFICATE-----/ {
    inside = 0
    if (file == 1) { known[pem] = 1 }
    else if (!(pem in known)) { n++; out = dir "/host-ca-" n ".crt"; printf "%s", pem > out; close(out) }
  }
' "$image_bundle" "$host_bundle"
count=$(find "$dir" -name 'host-ca-*.crt' | wc -l)
if [ "$count" -gt 0 ]; then
  chroot "$root" update-ca-certificates >/dev/null
  echo "bases.sh: trusting $count CA certificate(s) of $host_bundle that Debian's bundle lacks" >&2
fi
HOOK
}

# debian_rootfs NAME [PACKAGES...]: prints the path of a cached rootfs tarball for bookworm
# minbase plus PACKAGES (and ROOTFS_HOOKS), running mmdebstrap (as root) when the cache has none.
debian_rootfs() {
  local name=$1; shift
  local includes
  includes=$(IFS=,; echo "$*")
  local key
  # (No hooks: the key of the bases made before hooks existed, so their caches stay valid.)
  key=$(printf '%s\n' "v2" "$SUITE" "$DEBIAN_MIRROR" "$DEBIAN_SECURITY_MIRROR" "$includes" "${SLIM_DPKG_OPTS[@]}" \
    ${ROOTFS_HOOKS[@]+"${ROOTFS_HOOKS[@]}"} \
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
  local hook
  for hook in ${ROOTFS_HOOKS[@]+"${ROOTFS_HOOKS[@]}"}; do args+=(--customize-hook="$hook"); done
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

# deb_version TARBALL PACKAGE: the upstream version of PACKAGE installed in TARBALL (no epoch,
# no Debian revision: 2:1.19~1 -> 1.19~1, 18.20.4+dfsg-1~deb12u3 -> 18.20.4+dfsg).
deb_version() {
  tar -xOf "$1" ./var/lib/dpkg/status 2>/dev/null |
    awk -v p="$2" '$1 == "Package:" { pkg = $2 } !done && pkg == p && $1 == "Version:" { v = $2; sub(/^[0-9]+:/, "", v); sub(/-[^-]*$/, "", v); print v; done = 1 }'
}

# major_minor VERSION: 1.19.8 -> 1.19 (the tag the official images use).
major_minor() { echo "$1" | sed -nE 's/^([0-9]+\.[0-9]+).*/\1/p'; }

# import_base TARBALL NAME [-t NAME]... [--change ...]: imports the rootfs and reports its ID.
import_base() {
  local tarball=$1 name=$2; shift 2
  "$KILN" import "$tarball" -t "$name" "$@" >/dev/null
  echo "bases.sh: $name ($("$KILN" inspect "$name" | jq -r .Id))"
}

BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

make_golang() {
  ROOTFS_HOOKS=()
  add_hook golang <<'HOOK'
mkdir -p "$1/go/src" "$1/go/bin" && chmod -R 1777 "$1/go"
HOOK
  with_host_cas
  local tarball
  tarball=$(debian_rootfs golang golang-go ca-certificates)
  ROOTFS_HOOKS=()
  local full
  full=$(deb_version "$tarball" golang-1.19-go)
  [ -n "$full" ] || full=$(tar -tf "$tarball" | sed -nE 's|^(\./)?usr/lib/go-([0-9.]+)/$|\2|p' | sort -V | tail -n1)
  [ -n "$full" ] || die "no Go toolchain in $tarball"
  # The official image: GOPATH=/go, its bin first on PATH, WORKDIR $GOPATH, GOTOOLCHAIN=local.
  import_base "$tarball" "golang:$(major_minor "$full")" \
    --change "ENV GOLANG_VERSION=$full" \
    --change 'ENV GOTOOLCHAIN=local' \
    --change 'ENV GOPATH=/go' \
    --change "ENV PATH=/go/bin:/usr/lib/go/bin:$BASE_PATH" \
    --change 'WORKDIR /go'
}

make_node() {
  ROOTFS_HOOKS=()
  # The official image's unprivileged user (tutorials' `USER node`).
  add_hook node <<'HOOK'
chroot "$1" groupadd --gid 1000 node
chroot "$1" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
HOOK
  with_host_cas
  local tarball
  tarball=$(debian_rootfs node nodejs npm ca-certificates)
  ROOTFS_HOOKS=()
  local full
  full=$(deb_version "$tarball" nodejs)
  full=${full%%+*}
  [ -n "$full" ] || die "no nodejs in $tarball"
  import_base "$tarball" "node:${full%%.*}" \
    --change "ENV NODE_VERSION=$full" \
    --change "ENV PATH=$BASE_PATH" \
    --change 'CMD ["node"]'
}

make_nginx() {
  ROOTFS_HOOKS=()
  # Like the official image: conf.d/default.conf serves /usr/share/nginx/html (IPv4 only: a
  # `kiln run --network none` sandbox may have no IPv6 loopback) instead of Debian's
  # sites-enabled/default, and the logs go to the container's stdout/stderr.
  add_hook nginx <<'HOOK'
set -eu
rm -f "$1/etc/nginx/sites-enabled/default"
cat >"$1/etc/nginx/conf.d/default.conf" <<'CONF'
server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
CONF
ln -sf /dev/stdout "$1/var/log/nginx/access.log"
ln -sf /dev/stderr "$1/var/log/nginx/error.log"
HOOK
  local tarball
  tarball=$(debian_rootfs nginx nginx-light curl)
  ROOTFS_HOOKS=()
  local full
  full=$(deb_version "$tarball" nginx)
  [ -n "$full" ] || die "no nginx in $tarball"
  import_base "$tarball" "nginx:$(major_minor "$full")" \
    --change "ENV NGINX_VERSION=$full" \
    --change "ENV PATH=$BASE_PATH" \
    --change 'EXPOSE 80' \
    --change 'STOPSIGNAL SIGQUIT' \
    --change 'CMD ["nginx", "-g", "daemon off;"]'
}

make_rust() {
  ROOTFS_HOOKS=()
  add_hook rust <<'HOOK'
mkdir -p "$1/usr/local/cargo/bin" && chmod -R a+w "$1/usr/local/cargo"
HOOK
  with_host_cas
  local tarball
  tarball=$(debian_rootfs rust rustc-web cargo-web ca-certificates)
  ROOTFS_HOOKS=()
  local full
  full=$(deb_version "$tarball" rustc-web)
  full=${full%%+*}
  [ -n "$full" ] || die "no rustc-web in $tarball"
  # The official image: CARGO_HOME=/usr/local/cargo (the registry cache tutorials mount), its
  # bin first on PATH. Also tagged rust:1 (the latest 1.x, as on Docker Hub), which the example
  # names: rustc-web follows Rust releases within bookworm.
  import_base "$tarball" "rust:$(major_minor "$full")" -t rust:1 \
    --change "ENV RUST_VERSION=$full" \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change "ENV PATH=/usr/local/cargo/bin:$BASE_PATH"
}

[ $# -gt 0 ] || set -- busybox
for base in "$@"; do
  case $base in
    busybox) make_busybox ;;
    debian) make_debian ;;
    python) make_python ;;
    golang) make_golang ;;
    node) make_node ;;
    nginx) make_nginx ;;
    rust) make_rust ;;
    all) make_busybox; make_debian; make_python; make_golang; make_node; make_nginx; make_rust ;;
    *) die "unknown base image '$base' (known: busybox, debian, python, golang, node, nginx, rust, all)" ;;
  esac
done
