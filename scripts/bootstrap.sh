#!/usr/bin/env bash
# Brings a Debian 12 machine from nothing to a built sluice: system packages,
# npm dependencies, BPF objects, the native addon and the TypeScript build.
# Idempotent; when everything is present and up to date it only checks.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { printf 'bootstrap: %s\n' "$*" >&2; }

# Debian packages the build, the tests, the demo and the benchmarks use.
packages=(
  clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config make g++ python3
  iproute2 iputils-ping tcpdump libpcap-dev iperf3 bpftool
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing Debian packages: ${missing[*]} (run as root, or install them, then retry)"
    exit 1
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm dependencies: reinstall when package-lock.json changed since the last install.
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.sluice-lock-sum
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$lock_sum" ]]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$lock_sum" >"$stamp"
fi

# is_stale TARGET SOURCE...: true when TARGET is missing or older than any source file.
is_stale() {
  local target=$1
  shift
  [[ -e "$target" ]] || return 0
  [[ -n "$(find "$@" -newer "$target" -type f -print -quit 2>/dev/null)" ]]
}

make -s -C bpf/progs

addon=bpf/addon/build/Release/sluice_bpf.node
if [[ -f bpf/addon/binding.gyp ]] && is_stale "$addon" bpf/addon/binding.gyp bpf/addon/src; then
  say "building the native addon"
  npx --no-install node-gyp rebuild --directory bpf/addon --loglevel=error >/dev/null
fi

if is_stale dist/.tsbuildinfo tsconfig.json bpf controller api cli netns-lab package.json; then
  say "compiling TypeScript"
  npx --no-install tsc -p tsconfig.json
fi
