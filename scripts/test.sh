#!/usr/bin/env bash
# Runs the whole test suite (installs what it needs first). Extra args go to pytest.
source "$(dirname "$0")/_venv.sh"
source "$(dirname "$0")/_system_tools.sh"
cd "$ROOT"
install_system_tools
ruff check src tests bench
ruff format --check src tests bench
mypy
set +e
python -m pytest -n auto "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "scripts/test.sh: pytest collected no tests; treating as failure" >&2
    exit 1
fi
exit $rc
