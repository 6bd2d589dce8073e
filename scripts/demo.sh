#!/usr/bin/env bash
# Starts the main job (installs what it needs first). Extra args go to `quorumdb demo`.
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
exec quorumdb demo "$@"
