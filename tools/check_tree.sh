#!/usr/bin/env bash
# Checks of the tree that no linter makes:
# - the repository stands alone: no tracked file refers to the folder beside
#   it that only our own machines have (test data lives in tests/testdata/);
# - no source folder (cli/, runtime/, ffi/, tests/, and their subfolders)
#   holds more than 12 loose .ts files: past that, a folder is split by role.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
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
  fail=1
fi
MAX_LOOSE=12
while IFS= read -r dir; do
  n=$(find "$dir" -maxdepth 1 -type f -name '*.ts' | wc -l)
  if [ "$n" -gt "$MAX_LOOSE" ]; then
    echo "$dir holds $n .ts files (at most $MAX_LOOSE): split it by role" >&2
    fail=1
  fi
done < <(find cli runtime ffi tests -type d -not -path '*/node_modules*' -not -path 'tests/testdata*' -not -path 'tests/workloads/build*')
exit "$fail"
