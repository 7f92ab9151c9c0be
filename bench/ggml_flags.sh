#!/usr/bin/env bash
# Prints the CMake flags that build llama.cpp (ggml) for the instruction sets this CPU reports:
# a build with AVX-512 forced on dies on CPUs without it. AMX stays off: virtual CPUs may
# advertise instructions they cannot run. Used by .ci/run (llama-cpp-python) and
# bench/llama_server.sh.
has() { grep -qw "$1" /proc/cpuinfo && echo ON || echo OFF; }
echo "-DGGML_NATIVE=OFF -DGGML_AVX=$(has avx) -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma) -DGGML_F16C=$(has f16c) -DGGML_AVX512=$(has avx512f) -DGGML_AVX512_VNNI=$(has avx512_vnni) -DGGML_AVX512_VBMI=$(has avx512vbmi) -DGGML_AVX_VNNI=$(has avx_vnni) -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
