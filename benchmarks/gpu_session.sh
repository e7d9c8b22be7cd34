#!/usr/bin/env bash
# Everything a lent GPU is for, in one run of at most ~9 minutes (the device tool's budget):
#   1. a latent cache of GPU_IMAGES shapes images encoded by the embedded VAE (rendered by workers);
#   2. benchmarks/gpu.py: `pytest -m gpu`, the embedded pipeline on CUDA, benchmark (c) at the
#      official large and base presets, training throughput -> $OUT/gpu.json;
#   3. the embedded generator trained with the recipe of each line of GPU_RECIPES, side by side on
#      the one GPU, for as many steps as the measured throughput allows before the deadline, each
#      exported with its sample metrics (500 samples per order) -> $OUT/<name>/generator_small.*
#
#     PYTHONPATH=. OUT=/tmp/out bash benchmarks/gpu_session.sh            # on the GPU machine
#     GPU_QUICK=1 PYTHONPATH=. OUT=/tmp/out bash benchmarks/gpu_session.sh  # a CPU rehearsal
#
# Steps are fixed before each run starts (written in its sidecar's command), so a run can be
# repeated exactly; only their number is chosen from the time left.
set -u
py=${PYTHON:-python3}  # the GPU image's Python with PyTorch
export PYTHONUNBUFFERED=1
start=$(date +%s)
deadline=$((start + ${GPU_SECONDS:-510}))
quick=${GPU_QUICK:-0}
log="$OUT/session.log"
mkdir -p "$OUT" runs/gpu
say() { echo "[$(($(date +%s) - start)) s] $*" | tee -a "$log"; }

if [ "$quick" = 1 ]; then
    device=cpu images=${GPU_IMAGES:-256} eval_samples=10 quick_flag=--quick preset_flag="--preset tokenbridge_tiny"
else
    device=cuda images=${GPU_IMAGES:-200000} eval_samples=500 quick_flag= preset_flag=
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$log" 2>&1
fi
latents=runs/gpu/latents.safetensors

say "1. latent cache of $images images"
$py -c "from tokenbridge import train, training_tasks; training_tasks.latent_cache(train.parse_run(['generator', '--out', 'runs/gpu', \
'--latents', '$latents', '--num-images', '$images', '--device', '$device', '--workers', '8']).recipe)" >>"$log" 2>&1 \
    || say "latent cache FAILED"

say "2. benchmarks/gpu.py"
timeout 240 $py benchmarks/gpu.py $quick_flag --out "$OUT/gpu.json" >>"$log" 2>&1 || say "gpu.py FAILED"

# Steps per run from the measured single-process step rate at batch 512 (the loop's own work and
# the runs sharing the GPU taken as a 0.6 factor and an even split), leaving 90 s to export.
recipes=${GPU_RECIPES:-"fixed --position-bias relative --head-lr-scale 10
control --position-bias none"}
runs=$(printf '%s\n' "$recipes" | grep -c .)
rate=$($py -c "import json; print(json.load(open('$OUT/gpu.json'))['parts']['training']['batch_512']['steps_per_s'])" 2>/dev/null || echo 2)
budget=$((deadline - $(date +%s) - 90))
steps=$($py -c "print(max(50, int($budget * $rate * 0.6 / $runs)))")
say "3. training $runs recipe(s), $steps steps each (rate $rate steps/s alone, $budget s left)"
common="--batch-size 512 --lr 3e-3 --weight-decay 0.02 --warmup-steps 200 --ema-decay 0.998 --dropout 0 \
--head-positions 16 --precision bf16 --checkpoint-every 60 --no-progress --device $device --num-images $images"
while read -r name recipe; do
    [ -z "$name" ] && continue
    mkdir -p "$OUT/$name"
    $py -m tokenbridge.train generator --out "runs/gpu/$name" --latents "$latents" --steps "$steps" $common \
        $preset_flag $recipe --eval-samples "$eval_samples" --export "$OUT/$name/generator_small" \
        >"runs/gpu/$name.log" 2>&1 &
done <<<"$recipes"
wait
for f in runs/gpu/*.log; do echo "== $f" >>"$log"; tail -n 5 "$f" >>"$log"; done
say "done"
