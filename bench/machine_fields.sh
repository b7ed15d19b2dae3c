# shellcheck shell=bash
# Sourced by bench scripts: machine_fields BUILD ROOT WORK prints this run's OpenBLAS kernel and
# SGEMM rate as JSON fields ("openblas_kernel": ..., "openblas_sgemm_gflops": ...), measured by
# step_bench on configs/transformer_xl_char.yaml; on failure it shows step_bench's stderr and fails.
machine_fields() {
  local build="$1" root="$2" work="$3"
  "$build/bench/step_bench" --config "$root/configs/transformer_xl_char.yaml" --steps 1 \
    --set model.memory_len=0 --set data.format=synthetic --set data.synthetic=duplication \
    --set train.batch_size=1 2> "$work/machine.err" | python3 -c "import json, sys
d = json.loads(sys.stdin.read().strip().splitlines()[-1])
print('\"openblas_kernel\": \"%s\", \"openblas_sgemm_gflops\": %.0f' % (d['openblas_kernel'], d['openblas_sgemm_gflops']))" ||
    { cat "$work/machine.err" >&2; return 1; }
}
