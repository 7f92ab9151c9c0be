#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` (the continuous-batching reference of `lmlab bench serve`)
# from the llama.cpp source inside llama-cpp-python's source package on PyPI, the same llama.cpp
# the other references use, for this CPU's instruction sets (bench/ggml_flags.sh). Cached in
# ~/.cache/lmlab-llama-server (rebuilt when the flags change); prints the binary's path.
# Takes several minutes on 2 cores the first time.
set -euo pipefail
version=0.3.36
dir="$HOME/.cache/lmlab-llama-server"
flags="$("$(dirname "$0")/ggml_flags.sh")"
bin="$dir/build/bin/llama-server"
if [ -x "$bin" ] && [ "$(cat "$dir/cmake-args" 2>/dev/null)" = "$flags" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$dir"
tarball="$dir/llama_cpp_python-$version.tar.gz"
if [ ! -f "$tarball" ]; then
  # The source package's address from PyPI's simple index (`pip download --no-binary` would
  # build its build tools, CMake included, from source first).
  url=$(curl -fsS https://pypi.org/simple/llama-cpp-python/ | grep -o "href=\"[^\"]*llama_cpp_python-$version.tar.gz[^\"]*\"" | head -1 | sed 's/^href="//; s/"$//; s/#.*//')
  curl -fsSL -o "$tarball.tmp" "$url" && mv "$tarball.tmp" "$tarball"
fi
# CMake from PyPI when the system has none (as llama-cpp-python's own build does).
cmake=$(command -v cmake || true)
if [ -z "$cmake" ]; then
  [ -x "$dir/venv/bin/cmake" ] || { python3 -m venv "$dir/venv" && "$dir/venv/bin/pip" install -q cmake >&2; }
  cmake="$dir/venv/bin/cmake"
fi
rm -rf "$dir/src" && mkdir -p "$dir/src"
tar -xzf "$tarball" -C "$dir/src" --strip-components=1
# shellcheck disable=SC2086
"$cmake" -S "$dir/src/vendor/llama.cpp" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF $flags >&2
"$cmake" --build "$dir/build" --target llama-server -j"$(nproc)" >&2
echo "$flags" > "$dir/cmake-args"
echo "$bin"
