#!/bin/bash
# Creates .venv with the pinned test and lint tools, and the glue installed
# editable with current PyPI versions of its dependencies.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r tests/requirements-tools.txt
.venv/bin/pip install -q -e glue
