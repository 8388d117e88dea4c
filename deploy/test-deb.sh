#!/usr/bin/env bash
# CI (run by .ci/run): builds the .deb, installs it with dpkg -i, and runs what
# it installed the way an operator would: the binary, the man page, the
# completions. Removes the package again on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
  echo "installing cargo-deb 3.8.0"
  cargo install cargo-deb --version 3.8.0 --locked
fi

deb=$(deploy/package-deb.sh | tail -n 1)
echo "built $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,/Description:/p'
trap 'dpkg -r mockmate-diag >/dev/null 2>&1 || true' EXIT
dpkg -i "$deb"

fail() { echo "test-deb: $*" >&2; exit 1; }
version=$(/usr/bin/mockmate-diag --version)
echo "$version"
[[ "$version" == "mockmate-diag $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1) (commit "* ]] || fail "unexpected --version: $version"
/usr/bin/mockmate-diag serve --help | grep -q -- '--targets' || fail "serve --help does not name --targets"

man_page=$(dpkg -L mockmate-diag | grep '/usr/share/man/man1/mockmate-diag\.1') || fail "no man page installed"
MANWIDTH=80 man -l "$man_page" 2>/dev/null | grep -q 'serve' || fail "man -l $man_page does not describe serve"
for f in /usr/share/bash-completion/completions/mockmate-diag \
         /usr/share/zsh/vendor-completions/_mockmate-diag \
         /usr/share/fish/vendor_completions.d/mockmate-diag.fish; do
  [ -s "$f" ] || fail "missing completion file $f"
done
bash -c 'source /usr/share/bash-completion/completions/mockmate-diag && complete -p mockmate-diag' >/dev/null \
  || fail "the bash completion does not register"
echo "test-deb: the installed package works (binary, man page, completions)"
