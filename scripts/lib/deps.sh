# Shared by scripts/test and scripts/up: install missing system tools.
#
# ensure_deps CMD:DEBIAN_PACKAGE ...   installs each package whose command is missing, with
# apt-get when running as root; otherwise prints what to install and fails.

ensure_deps() {
  local missing_pkgs=() pair cmd pkg
  for pair in "$@"; do
    cmd="${pair%%:*}"
    pkg="${pair#*:}"
    command -v "$cmd" >/dev/null 2>&1 || missing_pkgs+=("$pkg")
  done
  [ "${#missing_pkgs[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${missing_pkgs[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_pkgs[@]}" >/dev/null
  else
    echo "missing system packages: ${missing_pkgs[*]}" >&2
    echo "install them (Debian/Ubuntu: sudo apt-get install ${missing_pkgs[*]}) and run again" >&2
    return 1
  fi
}

ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest" >&2
    cargo install --locked cargo-nextest
  fi
}
