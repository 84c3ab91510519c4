#!/bin/sh
# Writes NAME.json for each line of samples.tsv: the stdout of
# `enarx attest verify ARGS --json` run from the checkout given as $1 (default: this one).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=${1:-$here/../../..}
cd "$here/../evidence"
grep -v '^#' "$here/samples.tsv" | while IFS= read -r line; do
  name=${line%%	*}
  args=${line#*	}
  # shellcheck disable=SC2086
  IFS='	' deno run --allow-all "$root/cli/main.ts" attest verify $args --json > "$here/$name.json" || true
done
