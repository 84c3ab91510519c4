#!/usr/bin/env bash
# Fails when a tracked file refers to the folder beside the repository that
# only our own machines have: the repository must stand alone (a user clones
# it with nothing beside it). Test data lives in tests/testdata/.
set -euo pipefail
cd "$(dirname "$0")/.."
# Spelled in two parts so that this script does not name the folder itself.
pattern="\.\./""shared"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  hits=$(git ls-files -z | xargs -0 grep -lE "$pattern" -- 2>/dev/null || true)
else
  hits=$(grep -rlE "$pattern" --exclude-dir=node_modules --exclude-dir=.cache --exclude-dir=.git . || true)
fi
if [ -n "$hits" ]; then
  echo "These files refer to a folder outside the repository; copy what they need into it:" >&2
  echo "$hits" >&2
  exit 1
fi
