#!/usr/bin/env bash
# Man pages and bash completion for the package, generated at build time:
#   vmlockd(8)      from docs/man/vmlockd.8.md, with the CLI's usage table (src/cli/usage.ts) as COMMANDS
#   vmlockd.conf(5) from docs/configuration.md
#   completion      from the same usage table (src/cli/completion.ts)
# with marked-man (a devDependency). Usage: packaging/gen-docs.sh DIST_DIR STAGE_DIR VERSION
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIST=$(cd "$1" && pwd); STAGE=$2; VERSION=$3
MARKED_MAN="$ROOT/node_modules/.bin/marked-man"
[ -x "$MARKED_MAN" ] || { echo "gen-docs: marked-man missing (a devDependency: npm ci)" >&2; exit 1; }
# The docs' last commit dates the pages (reproducible), else now.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct -- docs 2>/dev/null || date +%s)}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

# marked escapes quotes in code spans as HTML entities that marked-man passes through; roff has none.
man_of() { "$MARKED_MAN" --no-breaks --version "vmlockd $VERSION" --manual "vmlockd" "$1" | sed -e 's/&quot;/"/g' -e "s/&#39;/'/g" -e 's/&lt;/</g' -e 's/&gt;/>/g' -e 's/&amp;/\&/g'; }

node --input-type=module -e "import { USAGE } from '$DIST/cli/usage.js'; process.stdout.write(USAGE.split('\n').slice(1).join('\n').replace(/^\n+/, ''))" > "$TMP/usage.txt"
{
  while IFS= read -r line; do
    if [ "$line" = USAGE ]; then echo '```'; cat "$TMP/usage.txt"; echo; echo '```'; else printf '%s\n' "$line"; fi
  done < "$ROOT/docs/man/vmlockd.8.md"
} > "$TMP/vmlockd.8.md"
{
  echo '# vmlockd.conf(5) -- vmlockd configuration file'
  echo
  echo '## DESCRIPTION'
  echo
  echo 'The installed package reads `/etc/vmlockd/vmlockd.conf` when `vmlockd serve` is given no `--config`.'
  echo 'What follows is docs/configuration.md.'
  tail -n +2 "$ROOT/docs/configuration.md" | sed -e 's/^## /## /'
  echo
  echo '## SEE ALSO'
  echo
  echo 'vmlockd(8), `/usr/share/doc/vmlockd/configuration.md`'
} > "$TMP/vmlockd.conf.5.md"

mkdir -p "$STAGE/usr/share/man/man8" "$STAGE/usr/share/man/man5" "$STAGE/usr/share/bash-completion/completions"
man_of "$TMP/vmlockd.8.md" | gzip -9n > "$STAGE/usr/share/man/man8/vmlockd.8.gz"
man_of "$TMP/vmlockd.conf.5.md" | gzip -9n > "$STAGE/usr/share/man/man5/vmlockd.conf.5.gz"
node --input-type=module -e "import { bashCompletion } from '$DIST/cli/completion.js'; import { USAGE } from '$DIST/cli/usage.js'; process.stdout.write(bashCompletion(USAGE))" \
  > "$STAGE/usr/share/bash-completion/completions/vmlockd"
