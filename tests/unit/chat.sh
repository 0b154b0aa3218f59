#!/bin/sh
# The chat templates against jinja2: tests/unit/chat_ref.py renders the
# published templates with jinja2 (as transformers does) into a JSON file, then
# test_chat renders every case itself and compares byte for byte.
# Usage: chat.sh TEST_CHAT_EXE OUT_DIR [PYTHON]
set -eu
exe=$1
out=$2
py=${3:-python3}
here=$(cd "$(dirname "$0")" && pwd)
if ! "$py" -c 'import jinja2' 2>/dev/null; then
  echo "SKIP: unit.chat.ref: jinja2 is not installed for $py (python3 -m pip install jinja2)"
  exit 77
fi
mkdir -p "$out"
"$py" "$here/chat_ref.py" "$out/chat_ref.json"
"$exe" "$out/chat_ref.json"
