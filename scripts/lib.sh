# Shared set-up for scripts/demo and scripts/test. Sourced, not run.
# Everything here is idempotent: it installs only what is missing, quietly.

KK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KK_CACHE="$KK_ROOT/.cache"
mkdir -p "$KK_CACHE"

kk_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
kk_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

kk_sudo() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else kk_die "need root (or sudo) to run: $*"
    fi
}

# kk_apt_install PKG... — installs the Debian packages that are not installed yet.
kk_apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    kk_log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    kk_sudo apt-get update -qq >/dev/null
    kk_sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What building needs.
KK_BUILD_PACKAGES=(build-essential pkg-config git libpcsclite-dev libssl-dev)
# The real peers the tests start, and the independent tools they check against.
KK_TEST_PACKAGES=(
    pcscd vsmartcard-vpcd pcsc-tools
    mosquitto mosquitto-clients
    postgresql
    cups-ipp-utils dbus avahi-daemon
    chromium
    fonts-ipaexfont fonts-ipamj-mincho poppler-utils
    python3-venv
)

# What the demo runs beside the product: the virtual card reader, the IPP printer
# (with the D-Bus and Avahi daemons it needs) and the forms' fonts.
KK_DEMO_PACKAGES=(
    pcscd vsmartcard-vpcd
    cups-ipp-utils dbus avahi-daemon
    fonts-ipaexfont fonts-ipamj-mincho
)

kk_require_cargo() {
    command -v cargo >/dev/null || kk_die "cargo not found: install Rust (https://rustup.rs) first"
}

# kk_cargo_tool BINARY CRATE VERSION — `cargo install`s a tool when it is absent.
kk_cargo_tool() {
    local bin=$1 crate=$2 version=$3
    command -v "$bin" >/dev/null && return 0
    kk_log "installing $crate $version (once; a few minutes)"
    cargo install --locked --quiet "$crate" --version "$version"
}

# kk_python_env — a virtualenv in .cache with the independent COSE implementation
# (pycose) the interoperability tests check us against. Prints its python.
kk_python_env() {
    local venv="$KK_CACHE/venv" req="$KK_ROOT/protocol/tests/interop/requirements.txt"
    local stamp="$venv/.requirements"
    if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$stamp"; then
        kk_log "preparing Python environment for interoperability tests"
        rm -rf "$venv"
        python3 -m venv "$venv" || kk_die "python3 -m venv failed"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
        cp "$req" "$stamp"
    fi
    echo "$venv/bin/python"
}

# kk_advisory_db — gives cargo-deny an advisory database under .cache/advisory-dbs:
# the live RustSec database when reachable, else the snapshot shipped beside the
# project (../shared/advisory-db). cargo-deny finds it by the name it derives from
# the default URL.
kk_advisory_db() {
    local dbs="$KK_CACHE/advisory-dbs" name="advisory-db-3157b0e258782691"
    local db="$dbs/$name"
    mkdir -p "$dbs"
    if timeout 10 git ls-remote -q https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
        kk_log "using the live RustSec advisory database"
        rm -rf "$db"
        git clone -q --depth 1 https://github.com/rustsec/advisory-db "$db"
        return 0
    fi
    local snap
    for snap in "${KAKANAI_ADVISORY_DB:-}" "$KK_ROOT/../shared/advisory-db" /work/shared/advisory-db; do
        [ -n "$snap" ] && [ -f "$snap/SNAPSHOT_COMMIT" ] && break
        snap=""
    done
    [ -n "$snap" ] || kk_die "no advisory database: the RustSec repository is unreachable and no snapshot was found (set KAKANAI_ADVISORY_DB)"
    if [ ! -f "$db/SNAPSHOT_COMMIT" ] || ! cmp -s "$snap/SNAPSHOT_COMMIT" "$db/SNAPSHOT_COMMIT"; then
        kk_log "using the advisory database snapshot $(cat "$snap/SNAPSHOT_COMMIT")"
        rm -rf "$db"
        cp -r "$snap" "$db"
        # cargo-deny reads the database's date from its HEAD commit.
        git -C "$db" init -q
        git -C "$db" add -A
        git -C "$db" -c user.name=kakanai -c user.email=ci@kakanai.invalid \
            commit -q -m "RustSec advisory-db snapshot $(cat "$snap/SNAPSHOT_COMMIT")"
    fi
}
