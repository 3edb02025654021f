#!/usr/bin/env bash
# `npm run package`: builds vmlockd_<version>_<arch>.deb with dpkg-deb from this checkout (after
# `npm ci`, which builds the native parts). Usage: packaging/build-deb.sh [OUT_DIR] (default packaging/out).
# The layout (docs/decisions/0013-debian-package.md, docs/operations.md "Install"):
#   /usr/lib/vmlockd/{dist,node_modules,native,package.json,install-layout.json}, /usr/bin/vmlockd,
#   /lib/systemd/system/vmlockd{.service,.socket,-virtlockd.socket}, /usr/lib/tmpfiles.d/vmlockd.conf,
#   /etc/vmlockd/vmlockd.conf (conffile, generated: `vmlockd config show --defaults`),
#   /usr/lib/vmlockd/libvirt-hook-qemu (not enabled), man pages, bash completion, /usr/share/doc/vmlockd.
# State (/var/lib/vmlockd) and the socket directory (/run/vmlockd) are made by postinst / systemd.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=$(mkdir -p "${1:-packaging/out}" && cd "${1:-packaging/out}" && pwd)
say() { echo "[package] $*" >&2; }

VERSION=$(node -p 'require("./package.json").version')
ARCH=$(dpkg --print-architecture)
DEB="$OUT/vmlockd_${VERSION}_${ARCH}.deb"
STAGE=$(mktemp -d "$OUT/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
LIB="$STAGE/usr/lib/vmlockd"
mkdir -p "$LIB" "$STAGE/DEBIAN"

[ -f native/build/Release/vmlockd_native.node ] || { echo "packaging: native/build/Release/vmlockd_native.node missing: run npm ci (or npm rebuild) first" >&2; exit 1; }
[ -d node_modules/better-sqlite3 ] || { echo "packaging: node_modules missing: run npm ci first" >&2; exit 1; }

# The daemon, compiled afresh into the package (a stale dist/ in the checkout could hold files whose
# sources moved or went away).
say "tsc -> $LIB/dist"
node node_modules/typescript/bin/tsc -p tsconfig.build.json --outDir "$LIB/dist" --sourceMap false
# Its scripts (a #! line) executable, as lintian expects (script-not-executable).
grep -rlZ '^#!' "$LIB/dist" --include='*.js' | xargs -0 -r chmod 0755
cp package.json "$LIB/"                       # "type": "module" for dist/, and the version
mkdir -p "$LIB/native/build/Release"
install -m 0644 native/build/Release/vmlockd_native.node "$LIB/native/build/Release/"

# Production node_modules: the checkout's (native parts built by npm ci for this node) less the
# devDependencies; nothing is downloaded. Then build leftovers the runtime never loads.
say "node_modules (production)"
cp package-lock.json "$LIB/"
cp -a node_modules "$LIB/"
(cd "$LIB" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
rm -f "$LIB/package-lock.json"
rm -rf "$LIB/node_modules/.bin" \
  "$LIB/node_modules/better-sqlite3/deps" "$LIB/node_modules/better-sqlite3/src" \
  "$LIB/node_modules/better-sqlite3/build/Release/obj" "$LIB/node_modules/better-sqlite3/build/Release/obj.target" \
  "$LIB/node_modules/better-sqlite3/build/Release/.deps" "$LIB/node_modules/better-sqlite3/build/Release/sqlite3.a" \
  "$LIB/node_modules/better-sqlite3/build/Release/test_extension.node" "$LIB/node_modules/better-sqlite3/build/deps" \
  "$LIB/node_modules/fs-ext/build/Release/obj.target" "$LIB/node_modules/fs-ext/build/Release/.deps" "$LIB/node_modules/fs-ext/tests"
find "$LIB/node_modules" -name '*.md' -o -name '*.markdown' -o -name '*.map' | grep -v -i 'license' | xargs -r rm -f
# Build debris the runtime never reads (lintian: package-contains-eslint-config-file, -npm-ignore-file,
# -vcs-control-file, privacy-breach-generic): dotfiles (.eslintrc, .npmignore, .travis.yml,
# .gitattributes, npm's .package-lock.json), the native addons' build files beside their .node
# (config.gypi, binding.gyp, the C/C++ sources at their top), Makefiles, HTML pages.
find "$LIB/node_modules" -mindepth 1 -name '.*' -prune -exec rm -rf {} +
while IFS= read -r -d '' gyp; do
  mod=$(dirname "$gyp")
  rm -f "$gyp"
  [ ! -d "$mod/build" ] || find "$mod/build" -type f ! -path "$mod/build/Release/*.node" -delete
  find "$mod" -maxdepth 1 -type f \( -name '*.c' -o -name '*.cc' -o -name '*.cpp' -o -name '*.h' \) -delete
done < <(find "$LIB/node_modules" -name binding.gyp -print0)
find "$LIB/node_modules" -type f \( -name '*.html' -o -name Makefile -o -name '*.mk' \) -delete
find "$LIB/node_modules" -mindepth 1 -type d -empty -delete   # scopes npm prune emptied, build dirs now bare
# An executable bit only on what runs (lintian: executable-not-elf-or-script): a file without #! loses it.
find "$LIB/node_modules" -type f -perm /111 ! -name '*.node' -print0 | while IFS= read -r -d '' f; do
  [ "$(head -c 2 "$f")" = '#!' ] || chmod a-x "$f"
done
# The native modules, stripped as dh_strip does and not executable (lintian: unstripped-binary-or-object,
# shared-library-is-executable); the load check below runs on the stripped files.
command -v strip >/dev/null || { echo "packaging: strip is missing (binutils, which dpkg-dev pulls in)" >&2; exit 1; }
find "$LIB" -name '*.node' -type f -print0 | while IFS= read -r -d '' f; do
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$f"
  chmod 0644 "$f"
done
for dev in typescript tsx uvu fast-check @types marked-man marked esbuild @esbuild; do
  [ ! -e "$LIB/node_modules/$dev" ] || { echo "packaging: devDependency $dev left in node_modules after npm prune" >&2; exit 1; }
done

# The install-layout marker: the installed binary's defaults are the system paths (src/install-layout.ts).
cat > "$LIB/install-layout.json" <<JSON
{ "configFile": "/etc/vmlockd/vmlockd.conf", "stateDir": "/var/lib/vmlockd", "runtimeDir": "/run/vmlockd" }
JSON

# Every native part loads under this node, from the package tree, before anything is packed.
say "load check"
(cd / && node --input-type=module -e "
  const lib = '$LIB';
  const { native } = await import(lib + '/dist/engine/native.js');
  if (typeof native.dupFd !== 'function') throw new Error('vmlockd_native lacks dupFd');
  const { createRequire } = await import('node:module');
  const req = createRequire(lib + '/dist/main.js');
  const Database = req('better-sqlite3'); new Database(':memory:').close();
  if (typeof req('fs-ext').flock !== 'function') throw new Error('fs-ext has no flock');
")

mkdir -p "$STAGE/usr/bin"
cat > "$STAGE/usr/bin/vmlockd" <<'SH'
#!/bin/sh
# vmlockd, installed by the Debian package: node from the nodejs package (the native parts are built for it).
exec /usr/bin/node /usr/lib/vmlockd/dist/main.js "$@"
SH
chmod 0755 "$STAGE/usr/bin/vmlockd"

# The config file: this layout's defaults, every key commented, from the code itself.
mkdir -p "$STAGE/etc/vmlockd"
(cd / && node "$LIB/dist/main.js" config show --defaults) > "$STAGE/etc/vmlockd/vmlockd.conf"
grep -q '^#state_dir = "/var/lib/vmlockd"' "$STAGE/etc/vmlockd/vmlockd.conf" || { echo "packaging: the generated vmlockd.conf does not show the system layout" >&2; exit 1; }

mkdir -p "$STAGE/lib/systemd/system" "$STAGE/usr/lib/tmpfiles.d"
install -m 0644 contrib/systemd/vmlockd.service contrib/systemd/vmlockd.socket contrib/systemd/vmlockd-virtlockd.socket "$STAGE/lib/systemd/system/"
echo 'd /run/vmlockd 0755 root root -' > "$STAGE/usr/lib/tmpfiles.d/vmlockd.conf"
install -m 0755 contrib/libvirt-hook-qemu "$LIB/libvirt-hook-qemu"

# Man pages and bash completion (packaging/gen-docs.sh: marked-man, the CLI's usage table).
bash packaging/gen-docs.sh "$LIB/dist" "$STAGE" "$VERSION"

DOC="$STAGE/usr/share/doc/vmlockd"
mkdir -p "$DOC/decisions"
cp README.md docs/*.md "$DOC/"
# The Debian changelog (a native package: changelog.gz); its newest entry must be this version.
CHANGELOG_VERSION=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
[ "$CHANGELOG_VERSION" = "$VERSION" ] || { echo "packaging: packaging/debian/changelog's newest entry is $CHANGELOG_VERSION, package.json's version is $VERSION: add an entry (dch -v $VERSION)" >&2; exit 1; }
gzip -9n < packaging/debian/changelog > "$DOC/changelog.gz"
cp docs/decisions/*.md "$DOC/decisions/"
cat > "$DOC/copyright" <<TXT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vmlockd
Comment: the modules under /usr/lib/vmlockd/node_modules carry their own LICENSE files.

Files: *
Copyright: 2026 vmlockd maintainers
License: $(node -p 'require("./package.json").license')
TXT

# Control files.
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$STAGE/DEBIAN/"
echo /etc/vmlockd/vmlockd.conf > "$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
# The shared libraries the native .node modules link (libc6, libstdc++6), as dpkg-shlibdeps computes
# them (it wants a debian/control beside it; Node's own symbols are the nodejs dependency's).
SHL=$(mktemp -d)
mkdir "$SHL/debian" && printf 'Source: vmlockd

Package: vmlockd
Architecture: any
' > "$SHL/debian/control"
SHLIBS=$(cd "$SHL" && find "$STAGE" -name '*.node' -print0 | xargs -0 dpkg-shlibdeps -O 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
rm -rf "$SHL"
[ -n "$SHLIBS" ] || { echo "packaging: dpkg-shlibdeps found no library dependency of the native modules (dpkg-dev installed?)" >&2; exit 1; }
say "native Depends: $SHLIBS"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" -e "s/@SHLIBS@/$SHLIBS/" packaging/debian/control.in > "$STAGE/DEBIAN/control"
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums)

find "$STAGE" -type d -exec chmod 0755 {} +
rm -f "$DEB"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
say "built $DEB ($(du -h "$DEB" | cut -f1), installed size ${SIZE} KiB)"
echo "$DEB"
