#!/usr/bin/env bash
# The GPU checks of the NVML issue, on a machine with an NVIDIA GPU and PyTorch,
# writing their outputs to ${OUT:-./gpu-check}. With a wheel folder .whl/ (for
# machines that cannot reach a package index), it is installed first.
set -u
OUT=${OUT:-$PWD/gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 PREFECT_HOME=$(mktemp -d)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia-smi.txt"
$PY -c "import pynvml, torch; print('nvidia-ml-py', pynvml.__file__, 'torch', torch.__version__)"
echo "== observed flow with a GPU workload"
$PY benchmarks/gpu_real_flow.py --seconds "${SECONDS_OF_WORK:-35}" > "$OUT/flow.json" 2> "$OUT/flow.err"
echo "flow exit $?"; cat "$OUT/flow.json"; tail -5 "$OUT/flow.err"
echo "== sampler cost on real NVML beside a GPU workload"
$PY - <<'PYEOF' &
import time, torch
x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.monotonic() + float(__import__("os").environ.get("BENCH_SECONDS", "30")) * 2 + 15
while time.monotonic() < end:
    for _ in range(50):
        y = x @ x
    torch.cuda.synchronize()
PYEOF
LOAD=$!
sleep 3
$PY benchmarks/bench_gpu_sampler.py --real --seconds "${BENCH_SECONDS:-30}" --samples 300 > "$OUT/bench_real.json" 2>&1
echo "bench exit $?"; cat "$OUT/bench_real.json"
wait $LOAD
echo "== GPU tests"
$PY -m pytest tests/gpu -q -p no:cacheprovider -rs 2>&1 | tail -15 | tee "$OUT/pytest.txt"
