#!/usr/bin/env bash
# Builds the console's wasm bundle: nerve-ui (feature hydrate) for wasm32, wasm-bindgen, and with
# --release wasm-opt. Output: $NERVE_SITE_DIR/pkg/nerve_ui.js and nerve_ui_bg.wasm (default
# $CARGO_TARGET_DIR/site), which `nerve serve`/`nerve dev` serve under /pkg (api.site_dir).
# Sourced tool paths come from env.sh; run it through run.sh/test.sh or after `source env.sh`.
set -euo pipefail
release=0
for arg in "$@"; do
  case "$arg" in
    --release) release=1 ;;
    *) echo "build-web.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done
if [ -z "${NERVE_WASM_BINDGEN:-}" ]; then
  set --  # env.sh passes its arguments to install.sh
  source "$(dirname "$0")/env.sh"
fi
site="${NERVE_SITE_DIR:-$CARGO_TARGET_DIR/site}"
# The wasm rustc may differ from the host toolchain: keep its artefacts apart.
web_target="${CARGO_TARGET_DIR}/web"
profile=debug
flags=()
if [ "$release" = 1 ]; then profile=release; flags+=(--release); fi
echo "build-web: cargo build nerve-ui (hydrate, wasm32, $profile)" >&2
RUSTC="$NERVE_WASM_RUSTC" RUSTDOC="$(dirname "$NERVE_WASM_RUSTC")/rustdoc" CARGO_TARGET_DIR="$web_target" \
  "$NERVE_WASM_CARGO" build -p nerve-ui --lib --target wasm32-unknown-unknown \
  --no-default-features --features hydrate "${flags[@]}"
mkdir -p "$site/pkg"
built="$web_target/wasm32-unknown-unknown/$profile/nerve_ui.wasm"
if [ "$site/pkg/nerve_ui_bg.wasm" -nt "$built" ] && [ "$site/pkg/.profile" -nt "$built" ] \
   && [ "$(cat "$site/pkg/.profile")" = "$profile" ]; then
  echo "build-web: $site/pkg is up to date" >&2
  exit 0
fi
tmp="$(mktemp -d)"
"$NERVE_WASM_BINDGEN" --target web --no-typescript --out-dir "$tmp" --out-name nerve_ui \
  "$web_target/wasm32-unknown-unknown/$profile/nerve_ui.wasm"
if [ "$release" = 1 ]; then
  "$NERVE_WASM_OPT" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types \
    "$tmp/nerve_ui_bg.wasm" -o "$tmp/opt.wasm"
  mv "$tmp/opt.wasm" "$tmp/nerve_ui_bg.wasm"
fi
# Leptos' hydration script loads <output name>_bg.wasm, wasm-bindgen's own name.
mv "$tmp/nerve_ui.js" "$tmp/nerve_ui_bg.wasm" "$site/pkg/"
echo "$profile" > "$site/pkg/.profile"
rm -rf "$tmp"
echo "build-web: $(du -h "$site/pkg/nerve_ui_bg.wasm" | cut -f1) $site/pkg/nerve_ui_bg.wasm" >&2
