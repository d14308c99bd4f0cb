#!/usr/bin/env bash
# The accelerator paths of training, checked end to end on one machine:
#   quickstart   world, tiny model, SFT, both evaluations and GRPO on the device (bf16 on GPUs)
#   train        GRPO through `deepresearcher train` from the quickstart's SFT model
#   vllm         the same with vLLM colocated (when vLLM is installed)
#   zero3        GRPO under DeepSpeed ZeRO-3 (when deepspeed is installed), one process a GPU
#   fsdp2        GRPO under FSDP2 with vLLM (2+ GPUs and vLLM)
# Each check prints PASS or FAIL with its time; logs go to OUT/<check>.log. Exit status: the
# number of failed checks. Usage: bash benchmarks/gpu_smoke.sh [OUT]   (DEVICE=cpu runs the first
# two checks on a CPU.)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-smoke}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
failed=0

check() {
    local name=$1
    shift
    local start=$SECONDS
    if "$@" >"$OUT/$name.log" 2>&1; then
        echo "PASS $name ($((SECONDS - start)) s)"
    else
        echo "FAIL $name ($((SECONDS - start)) s): see $OUT/$name.log"
        tail -n 5 "$OUT/$name.log" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
}

has() { python -c "import $1" >/dev/null 2>&1; }

QS="$OUT/qs"
GRPO=(train quickstart-cpu "model=$QS/sft" "tools.world=$QS/world" "data.train=$QS/data/train.jsonl"
      "backend.device=$DEVICE" grpo.max_steps=2 grpo.questions_per_step=4
      grpo.rollouts_per_question=4 run.report_to=[])
GPUS=$(python -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)

python - <<'EOF'
import torch
print(f"torch {torch.__version__}; CUDA {torch.cuda.is_available()}; "
      f"devices {[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}")
EOF

check quickstart deepresearcher quickstart --out "$QS" --fast --device "$DEVICE" grpo.max_steps=2
check train deepresearcher "${GRPO[@]}" "run.output_dir=$OUT/train"
if [ "$DEVICE" != cpu ] && has vllm; then
    check vllm deepresearcher "${GRPO[@]}" "run.output_dir=$OUT/vllm" backend.use_vllm=true \
        backend.vllm_mode=colocate backend.vllm_gpu_memory_utilization=0.2
else
    echo "skip vllm (no vLLM, or not on a GPU)"
fi
if [ "$DEVICE" != cpu ] && has deepspeed && [ "$GPUS" -ge 1 ]; then
    check zero3 accelerate launch --config_file configs/accelerate/zero3.yaml \
        --num_processes "$GPUS" -m deepresearcher.cli.main "${GRPO[@]}" "run.output_dir=$OUT/zero3"
else
    echo "skip zero3 (no deepspeed, or no GPU)"
fi
if [ "$DEVICE" != cpu ] && has vllm && [ "$GPUS" -ge 2 ]; then
    check fsdp2 accelerate launch --config_file configs/accelerate/fsdp2.yaml \
        --num_processes "$GPUS" -m deepresearcher.cli.main "${GRPO[@]}" \
        "run.output_dir=$OUT/fsdp2" backend.use_vllm=true backend.vllm_gpu_memory_utilization=0.2
else
    echo "skip fsdp2 (needs 2+ GPUs and vLLM)"
fi
echo "$failed failed"
exit "$failed"
