# Sourced by test.sh: system tools some tests drive (kcat; ip and nft for the network-namespace
# nemesis, tests/nemesis/test_netns.py). Installed with apt-get when run as root; otherwise the
# tests that need them skip and say why in pytest's summary.
install_system_tools() {
    local missing=()
    command -v kcat >/dev/null 2>&1 || missing+=(kcat)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v nft >/dev/null 2>&1 || missing+=(nftables)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "scripts/test.sh: ${missing[*]} not installed and not root: dependent tests will skip" >&2
        return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
            || echo "scripts/test.sh: apt-get install ${missing[*]} failed: dependent tests will skip" >&2
    fi
}
