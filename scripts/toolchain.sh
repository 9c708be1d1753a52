# Sourced by the scripts: makes a Rust toolchain that can build for wasm32 available.
# rustup's own download is tried first (with a timeout: its server is not a promised registry);
# if it fails, Debian's rustc-web is installed and a wasm32 std is built for it once.
# Exports WASM_CARGO: the cargo command to build wasm32 with.

WASM_TARGET=wasm32-unknown-unknown
WASM_CARGO=cargo
export PATH="$HOME/.cargo/bin:$PATH"

_debian_wasm_toolchain() {
  apt_install rustc-web cargo-web rust-web-src lld-22
  local libdir=/usr/lib/rustlib/$WASM_TARGET/lib stamp id
  stamp=$libdir/.wick-std
  id=$(/usr/bin/rustc -vV | sha256sum | cut -c1-16)
  # The wasm32 target links with rust-lld, which Debian ships as lld.
  mkdir -p /usr/lib/rustlib/x86_64-unknown-linux-gnu/bin
  ln -sfn /usr/lib/llvm-22/bin/lld /usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld
  if [ "$(cat "$stamp" 2>/dev/null)" != "$id" ]; then
    echo "[setup] building the wasm32 std for Debian's rustc (about 2 minutes)" >&2
    local dir; dir=$(mktemp -d)
    mkdir -p "$dir/src" && : > "$dir/src/lib.rs"
    printf '[package]\nname="wasm_std"\nversion="0.0.0"\nedition="2021"\n' > "$dir/Cargo.toml"
    (cd "$dir" && RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C embed-bitcode=yes" \
      /usr/bin/cargo build -q --release -Z build-std=std,panic_abort --target $WASM_TARGET)
    rm -rf "$libdir" && mkdir -p "$libdir"
    find "$dir/target/$WASM_TARGET/release/deps" -name 'lib*.rlib' ! -name 'libwasm_std*' -exec cp {} "$libdir/" \;
    echo "$id" > "$stamp"
    rm -rf "$dir"
  fi
  rustup toolchain list | grep -q '^debian-web' || rustup toolchain link debian-web /usr
  WASM_CARGO="cargo +debian-web"
}

# std's sources, which the threaded build recompiles with atomics (-Z build-std).
_rust_src() {
  [ -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library/std" ] || timeout 300 rustup component add rust-src >&2
}

ensure_wasm_toolchain() {
  if rustup target list --installed 2>/dev/null | grep -qx $WASM_TARGET; then
    _rust_src && return 0
  fi
  if timeout 300 rustup target add $WASM_TARGET >&2 && _rust_src; then
    return 0
  fi
  echo "[setup] rustup could not install $WASM_TARGET; using Debian's rustc-web" >&2
  _debian_wasm_toolchain
}

# The toolchain to use, without installing anything (for build-wasm.sh after setup).
wasm_cargo() {
  if rustup target list --installed 2>/dev/null | grep -qx $WASM_TARGET \
     && [ -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library/std" ]; then
    echo cargo
  else
    echo "cargo +debian-web"
  fi
}
