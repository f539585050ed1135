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

# ensure_cpp_client: the Python 3.11 venv in which tests/tests/cpp_client.rs runs Apache's C++
# RocketMQ client (PyPI package `rocketmq` 0.4.4, which bundles librocketmq.so and its zlib).
# The venv lives in the target directory, where the tests look for it:
# ${CARGO_TARGET_DIR:-target}/cpp-client-venv. Creating it needs python3.11 with venv support;
# on Debian that is python3.11 and python3.11-venv, installed when missing (as root).
CPP_CLIENT_PACKAGE="rocketmq==0.4.4"

ensure_cpp_client() {
  local venv="${CARGO_TARGET_DIR:-target}/cpp-client-venv"
  local py="$venv/bin/python"
  if [ -x "$py" ] && "$py" -c 'import rocketmq.client' >/dev/null 2>&1; then
    return 0
  fi
  command -v python3.11 >/dev/null 2>&1 || ensure_deps python3.11:python3.11
  rm -rf "$venv"
  if ! python3.11 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3.11 keeps ensurepip in a separate package.
    rm -rf "$venv"
    ensure_deps ensurepip-missing:python3.11-venv
    python3.11 -m venv "$venv"
  fi
  echo "installing the C++ RocketMQ client ($CPP_CLIENT_PACKAGE) into $venv" >&2
  "$py" -m pip install --quiet --disable-pip-version-check "$CPP_CLIENT_PACKAGE"
  "$py" -c 'import rocketmq.client'
}

# ensure_chart_venv: the Python 3.11 venv in which scripts/packaging-check runs the Helm
# chart's checks: Helm's engine (PyPI `helm-python-sdk`, Helm's Go SDK as a shared library:
# lint and offline rendering), the Kubernetes API schemas (PyPI `kubernetes-validate`, which
# ships them, so validation needs no network) and `yamllint`. It lives in the target
# directory: ${CARGO_TARGET_DIR:-target}/chart-venv.
CHART_PACKAGES=("helm-python-sdk==0.2.2" "kubernetes-validate==1.37.0" "yamllint==1.38.0")

ensure_chart_venv() {
  local venv="${CARGO_TARGET_DIR:-target}/chart-venv"
  local py="$venv/bin/python"
  local probe='import helm_python, kubernetes_validate, yamllint'
  if [ -x "$py" ] && "$py" -c "$probe" >/dev/null 2>&1; then
    return 0
  fi
  command -v python3.11 >/dev/null 2>&1 || ensure_deps python3.11:python3.11
  rm -rf "$venv"
  if ! python3.11 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    ensure_deps ensurepip-missing:python3.11-venv
    python3.11 -m venv "$venv"
  fi
  echo "installing the chart tools (${CHART_PACKAGES[*]}) into $venv" >&2
  "$py" -m pip install --quiet --disable-pip-version-check "${CHART_PACKAGES[@]}"
  "$py" -c "$probe"
}
