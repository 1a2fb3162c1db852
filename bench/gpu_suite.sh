#!/usr/bin/env bash
# Every GPU check and benchmark of issue 20 in one run (≤ ~8½ minutes on one H100/H200), for a bare CUDA machine
# with torch and this project installed (`pip install -e '.[dev,gpu]'` over your CUDA torch).
#
#   bash bench/gpu_suite.sh            # from the repository root; PYTHON=... picks the interpreter
#
# Steps (each under its own time limit; a failed step is reported and the others still run):
#   1. pytest -m gpu                                   the tests marked gpu (bf16/TF32 placement, QLoRA, fused
#                                                      AdamW + pinned loader, half-precision scoring, profiler)
#   2. python -m bench.perf_gpu_mfu                    MFU of the 0.5 B causal LM, QLoRA vs full peak memory,
#                                                      also with the chunked loss (--chunked-loss 1024)
#   3. python -m bench.perf_gpu_ranking                reranking docs/s fp32/bf16/fp16 × batch sizes vs
#                                                      CrossEncoder.predict; cross-encoder training bf16 vs fp32
#   4. python -m bench.profile_phases --device cuda    host and device ms per phase, fp32 and bf16
# Results land in bench/results/ (perf_gpu_mfu.*, perf_gpu_ranking.*, profile_phases_cuda_*.json), where
# `make bench` / `python -m bench.write_benchmarks` read them; with $OUT set they and the logs are copied there too.
# Data: ../shared/evaldata (DL19, WikiText-2) when present; a shared/evaldata folder inside the repository is
# linked there. Without it the reranking runs on demo texts and the cross-encoder training is reported unmeasured.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ZENML_ANALYTICS_OPT_IN=false

if ! "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_suite: no CUDA GPU visible to $PYTHON (torch.cuda.is_available() is False, or torch is missing); nothing run" >&2
    exit 2
fi
if ! "$PYTHON" -c 'import finetune, transformers, sentence_transformers, bench.perf' 2>/dev/null; then
    echo "gpu_suite: the project is not importable by $PYTHON; run: pip install -e '.[dev,gpu]'" >&2
    exit 2
fi
if [ ! -d ../shared/evaldata ] && [ -d shared/evaldata ]; then
    ln -s "$PWD/shared" ../shared 2>/dev/null || echo "gpu_suite: could not link shared/ to ../shared; benches use demo data" >&2
fi

LOGS=bench/results/gpu_suite_logs
mkdir -p "$LOGS"
"$PYTHON" -c 'from bench.perf import machine; print(machine())' | tee "$LOGS/machine.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$LOGS/machine.txt" 2>/dev/null
failed=()
step() {  # step <name> <seconds> <command...>
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$LOGS/$name.log"
    echo "== $name: exit $rc after $((SECONDS - start))s"
    [ "$rc" -eq 0 ] || failed+=("$name(exit $rc)")
}

step pytest_gpu      90 "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider
step perf_gpu_mfu    210 "$PYTHON" -m bench.perf_gpu_mfu --steps 25 --warmup-steps 8 --chunked-loss 1024
step perf_gpu_ranking 150 "$PYTHON" -m bench.perf_gpu_ranking --repetitions 3 --groups 400
step profile_fp32     30 "$PYTHON" -m bench.profile_phases --device cuda --precision fp32
step profile_bf16     30 "$PYTHON" -m bench.profile_phases --device cuda --precision bf16

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/results"
    cp bench/results/perf_gpu_mfu.* bench/results/perf_gpu_ranking.* bench/results/profile_phases_cuda_*.json \
        "$OUT/results/" 2>/dev/null
    cp -r "$LOGS" "$OUT/"
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu_suite: failed: ${failed[*]}" >&2
    exit 1
fi
echo "gpu_suite: all steps passed; run 'python -m bench.write_benchmarks' to splice the results into BENCHMARKS.md"
