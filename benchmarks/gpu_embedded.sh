#!/usr/bin/env bash
# The embedded model on a lent GPU, in one run of at most ~8 minutes (issue 23, "train where the
# compute is"), with the recipe settled on the CPU:
#   1. the 16×16×4 VAE (`train vae --stride 4 --latent-channels 4`), unless VAE= names one;
#   2. a latent cache of GPU_IMAGES shapes images encoded by it (rendered by 8 workers);
#   3. generators on those latents at batch 512 with the CPU recipe, with absolute position tables
#      and without them (translation-equivariant), side by side, for as many steps as the time
#      left allows, a snapshot every 1/8 of the run;
#   4. the learning curve of each run's snapshots (200 samples at CFG 1 and 3, generative
#      classification).
# Everything that must come back lands in $OUT: the VAE, and per recipe $OUT/<name>/ with the
# generator and its sidecar, learning_curve.json/.png and metrics.csv; the logs.
#
#     PYTHONPATH=. OUT=/tmp/out bash benchmarks/gpu_embedded.sh            # on the GPU machine
#     GPU_QUICK=1 PYTHONPATH=. OUT=/tmp/out WORK=/tmp/work bash benchmarks/gpu_embedded.sh  # a CPU rehearsal
set -u
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
start=$(date +%s)
deadline=$((start + ${GPU_SECONDS:-480}))
log="$OUT/session.log"
work=${WORK:-runs/gpu_embedded}  # training runs and the latent cache; must not exist yet
if [ -e "$work" ]; then echo "gpu_embedded: $work exists: remove it or set WORK" >&2; exit 1; fi
mkdir -p "$OUT" "$work"
say() { echo "[$(($(date +%s) - start)) s] $*" | tee -a "$log"; }
left() { echo $((deadline - $(date +%s))); }

if [ "${GPU_QUICK:-0}" = 1 ]; then
    device=cpu images=${GPU_IMAGES:-64} vae_steps=2 vae_preset="--preset tiny" samples=10
    gen="--preset tokenbridge_tiny --batch-size 8" rate=1
else
    device=cuda images=${GPU_IMAGES:-200000} vae_steps=${VAE_STEPS:-2000} vae_preset= samples=200
    gen="--preset tokenbridge_small --batch-size 512 --precision bf16" rate=${GEN_STEPS_PER_S:-2}  # per run, two runs sharing the GPU at 256 tokens: a guess below the H100's 5.7/s at 64 tokens alone
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$log" 2>&1
fi
vae=${VAE:-$OUT/vae_grid16.safetensors}

if [ ! -f "$vae" ]; then
    say "1. VAE, $vae_steps steps"
    $py -m tokenbridge.train vae --out "$work/vae" --stride 4 --latent-channels 4 $vae_preset \
        --steps "$vae_steps" --batch-size 64 --lr 6e-4 --warmup-steps 100 --checkpoint-every 60 --device "$device" \
        --no-progress --export "${vae%.safetensors}" >>"$log" 2>&1 || { say "VAE FAILED"; exit 1; }
fi

say "2. latent cache of $images images"
$py -c "from tokenbridge import train, training_tasks; training_tasks.latent_cache(train.parse_run(['generator', '--out', '$work', \
'--vae', '$vae', '--num-images', '$images', '--device', '$device', '--workers', '8']).recipe)" >>"$log" 2>&1 \
    || { say "latent cache FAILED"; exit 1; }

# Steps from the time left (150 s are kept for the learning curves and the exports); the recipes
# (one per line of GEN_RECIPES: a name, then options) train side by side on the one GPU.
recipes=${GEN_RECIPES:-"absolute --absolute-position learned
equivariant --absolute-position none"}
steps=$($py -c "print(max(16, int(($(left) - 150) * $rate) // 8 * 8))")
say "3. generator recipes, $steps steps each"
common="$gen --steps $steps --lr 3e-3 --weight-decay 0.02 --warmup-steps 100 --ema-decay 0.998 --dropout 0 \
--head-positions 16 --head-init ordinal --local-mixing conv --class-input buffer+decoder --snapshot-every $((steps / 8)) \
--checkpoint-every 60 --device $device --eval-samples $samples --no-progress --latents $work/latents.safetensors"
while read -r name recipe; do
    [ -z "$name" ] && continue
    $py -m tokenbridge.train generator --out "$work/$name" --vae "$vae" $common $recipe \
        --export "$OUT/$name/generator_grid16" >"$OUT/$name.log" 2>&1 || say "generator $name FAILED" &
done <<<"$recipes"
wait

say "4. learning curves"
while read -r name recipe; do
    [ -z "$name" ] && continue
    $py -m tokenbridge.learning_curve "$work/$name" --vae "$vae" --samples "$samples" --heldout "$samples" \
        --device "$device" --out "$OUT/$name/learning_curve.json" >>"$OUT/$name.log" 2>&1 \
        || say "learning curve $name FAILED" &
done <<<"$recipes"
wait
for name in $(printf '%s\n' "$recipes" | cut -d' ' -f1); do cp "$work/$name/metrics.csv" "$OUT/$name/" 2>/dev/null; done
say "done"
