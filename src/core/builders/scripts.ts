// The builders' shell scripts, written by the agent into a version's .enjin-build/ before its prepare commands run.
// They reuse the previous install kept in $ENJIN_CACHE_DIR (per project, per node) when the lockfile is unchanged.

/** Shared by both scripts: how the cache is keyed, filled and reused. */
const CACHE_FUNCTIONS = String.raw`
say() { echo "enjin: $*"; }
cache="${'$'}{ENJIN_CACHE_DIR:-}"
# The key names the inputs of an install: the lockfile (or manifest) and the runtime's version.
cache_key() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
# restore DIR NAME KEY: copies the cache entry NAME-KEY to ./DIR; fails when there is none.
restore() {
  [ -n "$cache" ] && [ -d "$cache/$2-$3" ] || return 1
  rm -rf "./$1"
  cp -a "$cache/$2-$3" "./$1"
}
# save DIR NAME KEY: keeps a copy of ./DIR as the cache entry NAME-KEY for the next version, dropping older NAME entries.
save() {
  [ -n "$cache" ] && [ -d "./$1" ] || return 0
  mkdir -p "$cache"
  tmp="$cache/.$2-$3.$$"
  rm -rf "$tmp"
  cp -a "./$1" "$tmp"
  rm -rf "$cache/$2-$3"
  mv "$tmp" "$cache/$2-$3"
  for old in "$cache/$2"-*; do
    [ "$old" = "$cache/$2-$3" ] || rm -rf "$old"
  done
}
`;

export const NODE_SCRIPT = String.raw`#!/bin/sh
# enjin node builder: installs dependencies with the lockfile's own installer, reusing node_modules when it is unchanged.
set -eu
${CACHE_FUNCTIONS}
installer="$1"
[ -n "$cache" ] && export npm_config_cache="$cache/npm"
# npm's "new version available" notice is about the node's npm, not the app: noise in every deploy log.
export npm_config_update_notifier=false
case "$installer" in
  npm-ci) lock=package-lock.json; [ -f "$lock" ] || lock=npm-shrinkwrap.json ;;
  yarn) lock=yarn.lock ;;
  pnpm) lock=pnpm-lock.yaml ;;
  *) lock=package.json ;;
esac
key=$(printf '%s %s\n' "$installer" "$(node --version)" | cat - "$lock" | sha256sum | cut -c1-16)
if restore node_modules node_modules "$key"; then
  say "reused node_modules from the cache ($lock unchanged, key $key)"
  exit 0
fi
say "no cached node_modules for $lock (key $key): installing"
case "$installer" in
  npm-ci) npm ci --no-audit --no-fund ;;
  yarn)
    if command -v yarn >/dev/null 2>&1; then yarn install --frozen-lockfile
    else say "yarn.lock found but yarn is not installed on this node: installing with npm install instead (yarn.lock is not followed)"; npm install --no-audit --no-fund; fi ;;
  pnpm)
    if command -v pnpm >/dev/null 2>&1; then pnpm install --frozen-lockfile
    else say "pnpm-lock.yaml found but pnpm is not installed on this node: installing with npm install instead (pnpm-lock.yaml is not followed)"; npm install --no-audit --no-fund; fi ;;
  *) npm install --no-audit --no-fund ;;
esac
mkdir -p node_modules
save node_modules node_modules "$key"
say "saved node_modules in the cache (key $key)"
`;

export const PYTHON_SCRIPT = String.raw`#!/bin/sh
# enjin python builder: a virtualenv in .venv with the app's requirements, reusing the last one when they are unchanged.
set -eu
${CACHE_FUNCTIONS}
source="$1"
[ -n "$cache" ] && export PIP_CACHE_DIR="$cache/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  say "python3 -m venv is not available on this node; install python3-venv (apt-get install python3-venv)" >&2
  exit 1
fi
case "$source" in
  requirements) inputs="requirements.txt" ;;
  pipfile) inputs="Pipfile $( [ -f Pipfile.lock ] && echo Pipfile.lock )" ;;
  *) inputs="pyproject.toml" ;;
esac
key=$(python3 --version | cat - $inputs | sha256sum | cut -c1-16)
here=$(pwd -P)
if restore .venv venv "$key"; then
  # A virtualenv holds absolute paths (scripts' #! lines, activate, editable installs): they named the version it
  # was built in, and now name this one.
  origin=$(cat .venv/.enjin-origin)
  if [ "$origin" != "$here" ]; then
    grep -rlIF -- "$origin" .venv | while IFS= read -r f; do sed -i "s|$origin|$here|g" "$f"; done
  fi
  echo "$here" > .venv/.enjin-origin
  say "reused the virtualenv from the cache ($inputs unchanged, key $key)"
  if [ "$source" = pyproject ]; then .venv/bin/pip install --no-deps .; fi
  exit 0
fi
say "no cached virtualenv for $inputs (key $key): installing"
rm -rf .venv
python3 -m venv .venv
case "$source" in
  requirements) .venv/bin/pip install -r requirements.txt ;;
  pipfile)
    # pipenv turns the lock into requirements; the virtualenv stays the one enjin made.
    .venv/bin/pip install pipenv
    .venv/bin/pipenv requirements > .enjin-build/requirements-from-pipfile.txt
    .venv/bin/pip install -r .enjin-build/requirements-from-pipfile.txt ;;
  *) .venv/bin/pip install . ;;
esac
echo "$here" > .venv/.enjin-origin
save .venv venv "$key"
say "saved the virtualenv in the cache (key $key)"
`;

export const COLLECTSTATIC_SCRIPT = String.raw`#!/bin/sh
# enjin python builder, Django: collects static files when the settings name a STATIC_ROOT (else says why not).
set -eu
if ! .venv/bin/python manage.py shell -c 'from django.conf import settings; import sys; sys.exit(0 if getattr(settings, "STATIC_ROOT", None) else 3)' >/dev/null 2>&1; then
  echo "enjin: manage.py found but Django's settings have no STATIC_ROOT (or Django could not load them): collectstatic skipped"
  exit 0
fi
.venv/bin/python manage.py collectstatic --noinput
`;
