#!/usr/bin/env sh
# Unit tests of the Python tools (the generator and the judge). Uses the fixture venv when present.
set -e
cd "$(dirname "$0")/.."
PY=.cache/fixtures-venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" -m unittest discover -s tools/tests -v
