#!/bin/bash
# GPU check, run through the workplace's device tool on an H100 machine that
# has jax, torch and scikit-learn but no keras or tensorflow; .whl/ carries
# keras 3.15.1, namex and optree wheels for CPython 3.12, fetched here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_17_x86_64 -d .whl keras==3.15.1 namex optree
# and run there as
#   bash benchmarks/gpu_check.sh            (TESTS="tests/test_x.py ..." for some)
# The jax and torch suites run on the GPU side by side, then
# benchmarks/interleaved.py times dense vs pruned `fit` there. Everything
# lands in $OUT.
#
# Tests run with TF32 off and deterministic XLA GPU ops, as a user who wants
# bit-for-bit reproducible runs would set them (docs/design.md, "On GPUs");
# the benchmark runs with the defaults.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export KERAS_BACKEND=jax
{
  nvidia-smi -L
  nproc
  python3 -c "import jax, torch, keras, numpy; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__, torch.cuda.is_available()); print('keras', keras.__version__, 'numpy', numpy.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
for b in jax torch; do
  NVIDIA_TF32_OVERRIDE=0 XLA_FLAGS="--xla_gpu_deterministic_ops=true" \
  KERAS_BACKEND=$b timeout "${TEST_SECONDS:-300}" python3 -m pytest -q \
      -p no:cacheprovider -n "${WORKERS:-7}" ${TESTS:-tests} \
      > "$OUT/tests_$b.txt" 2>&1 &
done
wait
for b in jax torch; do
  echo "== $b"
  grep -E "^(FAILED|ERROR)" "$OUT/tests_$b.txt" | cut -c1-200
  tail -1 "$OUT/tests_$b.txt"
done
timeout "${BENCH_SECONDS:-150}" python3 benchmarks/interleaved.py \
    --all-backends --backends jax torch --repeats 2 --chunk 5 \
    --json-out "$OUT/interleaved_gpu.json" > "$OUT/bench.txt" 2>&1
grep -E "pair|^\|" "$OUT/bench.txt"
