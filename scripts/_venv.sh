# Sourced by the scripts in this folder: makes ./.venv with quorumdb and its dev tools.
# Idempotent: a stamp file records the pyproject.toml the venv was built from.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
STAMP="$VENV/.quorumdb-stamp"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PY" -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip 2> >(grep -v "is ignored" >&2)
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]" 2> >(grep -v "is ignored" >&2)
    echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
