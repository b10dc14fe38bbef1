#!/usr/bin/env bash
# Real media for the tests, fetched from package registries into a git-ignored cache (idempotent).
#
#   bash services/scripts/fetch-test-media.sh [CACHE_DIR]     (default: .cache/test-media)
#
# * speech with transcripts and word alignments: the LibriVox clips (Jane Austen, "Sense and
#   Sensibility", public domain) in the pocketsphinx sdist on PyPI, test/data/librivox/
# * more real speech: Debian's codec2-examples package, /usr/share/codec2/wav/ and raw/speech_orig_16k.wav
# * real music: test.mp3 in the demucs sdist on PyPI
#
# Exit status: 0 when the cache is complete; 75 (EX_TEMPFAIL) when a registry cannot be reached (the
# tests then skip, saying so); anything else is a real failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${1:-${MOODBGM_TEST_MEDIA:-$ROOT/.cache/test-media}}"
POCKETSPHINX=5.1.1
DEMUCS=4.1.0
CODEC2_PKG=codec2-examples
STAMP="$CACHE/.complete-ps$POCKETSPHINX-demucs$DEMUCS-$CODEC2_PKG"

if [[ -f "$STAMP" ]]; then
    exit 0
fi

PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || PY="$(command -v python3)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

unreachable() {
    echo "fetch-test-media: $1 is unreachable; real-media tests will be skipped" >&2
    exit 75
}

# --- PyPI sdists (only the sdist holds the test data; pip needs to read its metadata, so the build
# dependencies are allowed as wheels: --no-binary names only the package itself)
pypi_sdist() {  # name version
    local log="$WORK/pip-$1.log"
    if ! "$PY" -m pip download -q --no-deps --no-binary "$1" "$1==$2" -d "$WORK/$1" >"$log" 2>&1; then
        if grep -qiE "connection|resolve|network|timed out|no matching distribution" "$log"; then
            cat "$log" >&2
            unreachable "PyPI ($1==$2)"
        fi
        cat "$log" >&2
        echo "fetch-test-media: pip download $1==$2 failed" >&2
        exit 1
    fi
    ls "$WORK/$1"/*.tar.gz
}

mkdir -p "$CACHE/librivox" "$CACHE/codec2" "$CACHE/music"

sdist="$(pypi_sdist pocketsphinx "$POCKETSPHINX")"
tar -xzf "$sdist" -C "$WORK" --wildcards "pocketsphinx-$POCKETSPHINX/test/data/librivox/*"
src="$WORK/pocketsphinx-$POCKETSPHINX/test/data/librivox"
while read -r id; do
    [[ -n "$id" ]] && cp "$src/$id.wav" "$src/$id.txt" "$src/$id.json" "$CACHE/librivox/"
done <"$src/fileids"
cp "$src/fileids" "$CACHE/librivox/"

sdist="$(pypi_sdist demucs "$DEMUCS")"
tar -xzf "$sdist" -C "$WORK" "demucs-$DEMUCS/test.mp3"
cp "$WORK/demucs-$DEMUCS/test.mp3" "$CACHE/music/demucs-test.mp3"

# --- Debian package (downloaded, not installed: dpkg -x unpacks it into the work dir)
if ! (cd "$WORK" && apt-get download -q "$CODEC2_PKG" >"$WORK/apt.log" 2>&1); then
    cat "$WORK/apt.log" >&2
    if grep -qiE "unable to locate|temporary failure|could not resolve|failed to fetch" "$WORK/apt.log"; then
        unreachable "the Debian archive ($CODEC2_PKG; run apt-get update if the package is unknown)"
    fi
    exit 1
fi
dpkg -x "$WORK"/"$CODEC2_PKG"_*.deb "$WORK/deb"
cp "$WORK"/deb/usr/share/codec2/wav/*.wav "$CACHE/codec2/"
cp "$WORK/deb/usr/share/codec2/raw/speech_orig_16k.wav" "$CACHE/codec2/"

touch "$STAMP"
echo "fetch-test-media: cached in $CACHE" >&2
