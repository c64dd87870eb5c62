#!/usr/bin/env bash
# Refreshes the console screenshots in docs/: runs the demo (its own copy of the config, so the
# line the browser test draws is not kept), lets counts accumulate, then drives the console in
# headless Chromium with tests/console/e2e.mjs, writing the pictures into docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.deps/onnxruntime/libonnxruntime.so.1.32.0}
cargo build --release --bin pantau
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
sed -e "s#^\[outbox\]#[outbox]\npath = \"$tmp/outbox.redb\"#" config/demo.toml > "$tmp/demo.toml"
printf '\n[api]\ncameras_file = "%s/cameras.toml"\n' "$tmp" >> "$tmp/demo.toml"
password=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
PANTAU_ADMIN_PASSWORD=$password ./target/release/pantau demo --view log --config "$tmp/demo.toml" \
  > "$tmp/demo.log" 2>&1 &
pid=$!
echo "screenshots: demo started; waiting ${WARMUP_S:-90} s for counts and alerts"
sleep "${WARMUP_S:-90}"
PANTAU_URL=http://127.0.0.1:8080 PANTAU_USER=admin PANTAU_PASSWORD=$password SHOTS_DIR=$PWD/docs \
  PLAYWRIGHT_DIR=$PWD/.deps/console-test node tests/console/e2e.mjs
