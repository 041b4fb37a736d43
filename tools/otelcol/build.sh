#!/usr/bin/env bash
# Builds the collector of builder-config.yaml into tools/otelcol/dist/otelcol-msewatch with
# the collector's builder (go.opentelemetry.io/collector/cmd/builder, at the manifest's
# release), both from the Go module proxy. Skips when that binary exists and was built
# from this manifest (dist/manifest.sha256). Needs Go (/usr/local/go/bin/go or go on PATH).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
manifest="$here/builder-config.yaml"
dist="$here/dist"
binary="$dist/otelcol-msewatch"
stamp="$dist/manifest.sha256"
sum="$(sha256sum "$manifest" | cut -d' ' -f1)"
if [ -x "$binary" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
  echo "otelcol: $binary is built from this manifest"
  exit 0
fi
go="$(command -v go || echo /usr/local/go/bin/go)"
[ -x "$go" ] || { echo "otelcol: Go is not installed (need go or /usr/local/go/bin/go)" >&2; exit 1; }
export PATH="$(dirname "$go"):$PATH"
release="$(sed -n 's/^  version: *//p' "$manifest")"
tools="$here/.tools"
GOBIN="$tools" "$go" install "go.opentelemetry.io/collector/cmd/builder@v$release"
rm -rf "$dist"
cd "$here"
"$tools/builder" --config "$manifest"
echo "$sum" >"$stamp"
echo "otelcol: built $binary"
