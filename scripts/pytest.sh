#!/usr/bin/env bash
# Run pytest; exit code 5 ("no tests collected") is a failure, never a silent pass.
set -u
python="${1:-python3}"
shift || true
"$python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as failure" >&2
  exit 1
fi
exit "$rc"
