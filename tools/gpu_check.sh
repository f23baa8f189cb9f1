#!/usr/bin/env bash
# One GPU session, one results file: the CUDA tests and the benchmarks of issue 8.
#
#   bash tools/gpu_check.sh                  # results in ./gpu_out (or $OUT)
#
# Writes $OUT/gpu_results.md + gpu_results.json (device, versions, img/s and p50/p99 per
# config, the pipeline figures, the targets) and $OUT/gpu_check.log (every step's output).
# Each step runs under `timeout`; the whole run stays within GPU_CHECK_BUDGET_S seconds
# (default 480): steps that no longer fit are skipped and listed as skipped. Steps run in
# order of importance. Works offline: it installs nothing that is already importable, and
# goes on when pip cannot reach an index.
#
# Knobs (environment): OUT, GPU_CHECK_BUDGET_S, GPU_CHECK_SECONDS (timed seconds per bench
# setting, default 2), GPU_CHECK_SMOKE=1 (a fast CPU-only rehearsal of the script itself
# with a tiny model: checks the plumbing on a machine without a GPU; figures meaningless).
set -u
cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"  # models and video: big, not results
BUDGET_S="${GPU_CHECK_BUDGET_S:-480}"
SECS="${GPU_CHECK_SECONDS:-2}"
SMOKE="${GPU_CHECK_SMOKE:-0}"
RESERVE=25  # seconds kept for the report
START=$(date +%s)
LOG="$OUT/gpu_check.log"
: > "$LOG"; : > "$OUT/steps.tsv"; : > "$OUT/bench.jsonl"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python}"
BG_PID=""
trap '[ -n "$BG_PID" ] && kill "$BG_PID" 2>/dev/null; rm -rf "$WORK"' EXIT

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

# step NAME MAX_SECONDS CMD... : run CMD under timeout (capped by what is left), log, record.
step() {
  local name=$1 max=$2; shift 2
  local room=$(( $(left) - RESERVE ))
  local lim=$(( max < room ? max : room ))
  if (( lim < 15 )); then
    printf '%s\tskipped\t0\tnot enough time left (budget %ss)\n' "$name" "$BUDGET_S" >> "$OUT/steps.tsv"
    echo "=== $name: skipped (budget)" | tee -a "$LOG"; return 99
  fi
  echo "=== $name (limit ${lim}s, $(left)s left) ===" | tee -a "$LOG"
  local t0=$(date +%s) rc note=""
  timeout -k 10 "$lim" "$@" >> "$LOG" 2>&1; rc=$?
  (( rc == 124 || rc == 137 )) && note="timed out after ${lim}s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$note" >> "$OUT/steps.tsv"
  echo "--- $name: exit $rc in $(( $(date +%s) - t0 ))s $note" | tee -a "$LOG"
  return $rc
}

wait_bg() {  # wait_bg MAX_S: wait for the background video render, at most MAX_S seconds
  local i=0
  while kill -0 "$BG_PID" 2>/dev/null && (( i < $1 )); do sleep 1; i=$(( i + 1 )); done
  if kill -0 "$BG_PID" 2>/dev/null; then kill "$BG_PID" 2>/dev/null; wait "$BG_PID" 2>/dev/null; BG_PID=""; return 124; fi
  wait "$BG_PID"; local rc=$?; BG_PID=""; return $rc
}

bench() {  # bench NAME MAX_S MODEL_DIR ARGS... : tools/bench_infer.py appending to bench.jsonl
  local name=$1 max=$2 model=$3; shift 3
  step "$name" "$max" "$PY" tools/bench_infer.py "$model" --device "$DEV" --json "$OUT/bench.jsonl" \
    --warmup 3 --iters 100000 --max-seconds "$SECS" --crop "$CROP" "$@"
}

# ---- 0. torch and CUDA ---------------------------------------------------------------------
if ! "$PY" -c 'import torch' >> "$LOG" 2>&1; then
  step install-torch 240 "$PY" -m pip install --retries 0 --timeout 10 torch torchvision
fi
CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>>"$LOG" || echo 0)
if [ "$SMOKE" = 1 ]; then
  DEV=cpu; MAXVIT=ewaste_small_cnn; LITE0=ewaste_small_cnn; BATCHES="1 4"; CROP=64
  VIDEO_ARGS=(--seconds 2 --fps 15 --size 320x192 --rate 8)
elif [ "$CUDA" = 1 ]; then
  DEV=cuda; MAXVIT=maxvit_tiny_tf_224; LITE0=tf_efficientnet_lite0; BATCHES="1 8 32 128"; CROP=256
  VIDEO_ARGS=(--seconds 10 --fps 30 --size 1280x720 --rate 40)
else
  echo "torch sees no CUDA device: nothing to measure (GPU_CHECK_SMOKE=1 rehearses on the CPU)" | tee -a "$LOG"
  DEV=none
fi

# ---- 1. the package (offline-safe: pip only for what is missing) ---------------------------
if [ "$SMOKE" = 1 ]; then
  echo "smoke: no pip" >> "$LOG"
elif "$PY" -c 'import ewaste_stream, timm, cv2, onnxruntime, safetensors, pytest, yaml, pydantic' >> "$LOG" 2>&1; then
  step install-editable 60 "$PY" -m pip install --no-deps --no-build-isolation -e . -q
else
  step install-deps 180 "$PY" -m pip install --retries 0 --timeout 10 -e ".[test]" -q
fi
step env 60 "$PY" tools/gpu_check.py env "$OUT/env.json"
[ "$DEV" = none ] && { "$PY" tools/gpu_check.py report "$OUT"; exit 1; }
ORT_CUDA=$("$PY" -c 'import onnxruntime as o; print(int("CUDAExecutionProvider" in o.get_available_providers()))' 2>>"$LOG" || echo 0)
[ "$SMOKE" = 1 ] && ORT_CUDA=0

# ---- 2. simulated belt video, rendered on the CPU while the GPU is busy --------------------
(
  "$PY" tools/gpu_check.py photos "$WORK/photos" &&
  "$PY" tools/make_belt_video.py --images "$WORK/photos" --out "$WORK/belt" "${VIDEO_ARGS[@]}" \
    --cameras 2 --perspective 0 --seed 3
) > "$OUT/video.log" 2>&1 &
BG_PID=$!

# ---- 3. models (random weights) ------------------------------------------------------------
step model-maxvit 90 "$PY" tools/gpu_check.py model "$MAXVIT" "$WORK/maxvit"
step model-lite0 60 "$PY" tools/gpu_check.py model "$LITE0" "$WORK/lite0"

# ---- 4. GPU tests ---------------------------------------------------------------------------
if [ "$SMOKE" = 1 ]; then
  step pytest-gpu 120 "$PY" -m pytest -m gpu tests/gpu -q -p no:cacheprovider -rs
else
  step pytest-gpu 150 "$PY" -m pytest -m gpu tests/gpu tests/integration/test_backends.py -q -p no:cacheprovider -rs \
    --continue-on-collection-errors --junitxml "$OUT/pytest_gpu.xml"
fi

# ---- 5. inference benchmarks, eager ---------------------------------------------------------
for prec in fp16 bf16; do
  for cl in "" --channels-last; do
    bench "maxvit-eager-$prec${cl:+-cl}" 60 "$WORK/maxvit" --backend torch --precision "$prec" $cl --batch $BATCHES
  done
done
bench maxvit-eager-fp32 40 "$WORK/maxvit" --backend torch --precision fp32 --batch 8 128
bench lite0-eager-fp16-cl 50 "$WORK/lite0" --backend torch --precision fp16 --channels-last --batch $BATCHES
bench lite0-eager-fp16 50 "$WORK/lite0" --backend torch --precision fp16 --batch $BATCHES
bench lite0-eager-bf16-cl 50 "$WORK/lite0" --backend torch --precision bf16 --channels-last --batch $BATCHES

# ---- 6. the pipeline: replay the simulated video with MaxViT-Tiny on CUDA ------------------
wait_bg $(( $(left) - RESERVE > 0 ? $(left) - RESERVE : 1 )); VRC=$?
printf 'render-video\t%s\t\tbackground, beside the GPU steps; log in video.log\n' "$VRC" >> "$OUT/steps.tsv"
cat > "$WORK/pipeline.yaml" <<EOF
model: {dir: "$WORK/maxvit", backend: torch, device: $DEV, precision: fp16}
batching: {max_batch: 32, views_per_item: 4}
publish: {endpoint: null, decisions_log: null}
metrics: {listen: null}
logging: {file: null}
EOF
if [ "$VRC" = 0 ]; then
  step pipeline-fast 150 "$PY" -m ewaste_stream replay "$WORK/belt.cam0.mp4" "$WORK/belt.cam1.mp4" \
    --config "$WORK/pipeline.yaml" --out "$WORK/decisions.jsonl" --summary-json "$WORK/fast.json"
  step pipeline-score 30 sh -c "'$PY' tools/score_decisions.py '$WORK/belt.gt.jsonl' '$WORK/decisions.jsonl' --json > '$WORK/score.json'"
  step pipeline-realtime 60 "$PY" -m ewaste_stream replay "$WORK/belt.cam0.mp4" "$WORK/belt.cam1.mp4" \
    --config "$WORK/pipeline.yaml" --realtime --summary-json "$WORK/realtime.json"
  if [ -f tools/bench_pipeline.py ]; then  # PIPELINE's benchmark, unchanged; the device comes from the config
    step bench-pipeline 90 sh -c "'$PY' tools/bench_pipeline.py --video '$WORK/belt.cam0.mp4' '$WORK/belt.cam1.mp4' \
      --config '$WORK/pipeline.yaml' --json > '$OUT/bench_pipeline.json'"
  fi
  "$PY" tools/gpu_check.py pipeline "$OUT/pipeline.json" --fast "$WORK/fast.json" --realtime "$WORK/realtime.json" \
    --meta "$WORK/belt.meta.json" --score "$WORK/score.json" \
    --config "MaxViT-Tiny random weights, torch $DEV fp16 eager, max_batch 32, views_per_item 4, 2 cameras" >> "$LOG" 2>&1
fi

"$PY" tools/gpu_check.py report "$OUT" >> "$LOG" 2>&1  # an interim results file, in case the run is cut short

# ---- 7. compiled (warm-up compiles each batch size before timing) -------------------------
[ "$SMOKE" = 1 ] || bench maxvit-compiled-fp16 200 "$WORK/maxvit" --backend torch --precision fp16 --compile --batch 8 128

# ---- 8. the rest, as time allows -----------------------------------------------------------
if [ "$ORT_CUDA" = 1 ]; then  # ONNX export of MaxViT takes a while: only when ORT can use the GPU
  step model-lite0-onnx 60 "$PY" tools/gpu_check.py model "$LITE0" "$WORK/lite0_onnx" --onnx &&
    bench lite0-ort-cuda 45 "$WORK/lite0_onnx" --backend onnx --batch $BATCHES
  step model-maxvit-onnx 150 "$PY" tools/gpu_check.py model "$MAXVIT" "$WORK/maxvit_onnx" --onnx &&
    bench maxvit-ort-cuda 60 "$WORK/maxvit_onnx" --backend onnx --batch $BATCHES
else
  printf 'ort-cuda\tskipped\t0\tonnxruntime has no CUDAExecutionProvider here (onnxruntime-gpu not installed)\n' >> "$OUT/steps.tsv"
fi
[ "$SMOKE" = 1 ] && { "$PY" tools/gpu_check.py report "$OUT" | tee -a "$LOG"; exit 0; }
bench lite0-compiled-fp16-cl 120 "$WORK/lite0" --backend torch --precision fp16 --channels-last --compile --batch 8 128
bench maxvit-compiled-fp16-cudagraphs 150 "$WORK/maxvit" --backend torch --precision fp16 --compile \
  --compile-mode reduce-overhead --batch 1 8
bench maxvit-compiled-bf16-cl 200 "$WORK/maxvit" --backend torch --precision bf16 --channels-last --compile --batch 8 128

# ---- 9. one results file -------------------------------------------------------------------
"$PY" tools/gpu_check.py report "$OUT" 2>&1 | tee -a "$LOG"
echo "total $(( $(date +%s) - START ))s; results: $OUT/gpu_results.md" | tee -a "$LOG"
