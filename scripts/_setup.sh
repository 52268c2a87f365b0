# Shared set-up for scripts/serve, scripts/test and scripts/bench (sourced).
# Idempotent: a second run with nothing changed installs nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"

pick_python() {
    for py in python3.13 python3.12 python3.11 python3; do
        if command -v "$py" >/dev/null 2>&1 &&
           "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$py"; return 0
        fi
    done
    echo "pacsd needs Python >= 3.11 (Debian: apt-get install python3 python3-venv)" >&2
    return 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PACKAGE COMMAND...: install PACKAGE when any COMMAND is missing
# (a COMMAND starting with / is a file the package installs, a plugin say).
apt_install() {
    local pkg=$1; shift
    local cmd
    for cmd in "$@"; do
        if { [[ $cmd == /* ]] && [ ! -e "$cmd" ]; } || { [[ $cmd != /* ]] && ! command -v "$cmd" >/dev/null 2>&1; }; then
            echo "installing Debian package $pkg (for $cmd)" >&2
            as_root apt-get update -qq
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$pkg" >/dev/null
            return
        fi
    done
}

# setup_venv [EXTRAS]: create .venv and install the package (with EXTRAS).
setup_venv() {
    local extras=${1:-}
    if [ ! -x "$VENV/bin/python" ]; then
        local py; py=$(pick_python)
        "$py" -m venv "$VENV" || { echo "cannot create a venv: apt-get install python3-venv" >&2; return 1; }
    fi
    # Reinstall only when pyproject.toml changed or the extras are missing;
    # an install with the test extras also serves scripts/serve.
    local stamp="$VENV/.pacsd-installed" want have=""
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) [$extras]"
    [ -f "$stamp" ] && have=$(cat "$stamp")
    if [ "$have" != "$want" ] && { [ -n "$extras" ] || [ "${have%% *}" != "${want%% *}" ]; }; then
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        local target="$ROOT"
        [ -n "$extras" ] && target="$ROOT[$extras]"
        "$VENV/bin/python" -m pip install -q -e "$target"
        echo "$want" >"$stamp"
    fi
}
