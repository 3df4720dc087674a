#!/usr/bin/env sh
# `npm run demo` on a fresh machine: install the project's Node dependencies when missing, then
# run the tour on the project's Node (the cluster's parts are built on first use).
set -e
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/node ] || npm ci --no-audit --no-fund
exec node_modules/.bin/node demo/main.ts "$@"
