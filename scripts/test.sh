#!/usr/bin/env bash
# The whole test suite: installs what it needs, then lint and tests. The
# tests build in the release profile, as scripts/demo.sh does, so after the
# demo the library and binary are not compiled again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --release
