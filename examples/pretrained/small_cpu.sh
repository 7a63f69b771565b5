#!/usr/bin/env bash
# Reproduces the bundled default model, clevr-ddpm-small, from scratch on a CPU, then bundles and
# evaluates it.
#
#   bash examples/pretrained/small_cpu.sh [WORK_DIR]
#
# Data: i-CLEVR's layout and size (6,003 scenes, 18,009 nested frames) rendered by the built-in
# renderer at 64 x 64, trained at 32 x 32. Network: ConditionalUNet, base 48, stages 1, 2, 4,
# attention at 8 x 8 and in the bottleneck, no dropout (8.9 M parameters). Training: batch 32,
# AdamW 5e-4 after 500 warm-up steps, EMA 0.999, min-SNR-5 weighting, bf16 autocast, one
# thread; 6,500 steps took about 115 minutes on one core of a shared 2-core AMD EPYC.
# The run resumes where it stopped when started again. Extra arguments in TRAIN_ARGS are
# appended (argparse: the last value wins), e.g. TRAIN_ARGS="--steps 2" for a smoke test.
# bf16 pays only on CPUs with bfloat16 instructions (AVX-512 BF16 or AMX); elsewhere it is many
# times slower than float32 (the trainer warns): run with MIXED_PRECISION=no there.
set -euo pipefail
WORK=${1:-runs/clevr-ddpm-small}
CLI=${CLI:-clevr-diffusion}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
$CLI make-dataset "$WORK/data" --scenes ${SCENES:-6003} --width 64 --height 64
# shellcheck disable=SC2086  # TRAIN_ARGS is a word list
$CLI train --data "$WORK/data" --preload --image-size 32 --output-dir "$WORK/run" \
    --base-channels 48 --channel-mults 1,2,4 --attention-stages 2 --dropout 0 \
    --steps 6500 --batch-size 32 --lr 5e-4 --warmup-steps 500 --ema-decay 0.999 --snr-gamma 5 \
    --mixed-precision ${MIXED_PRECISION:-bf16} --sample-every 2000 --checkpoint-every 500 --log-every 50 --seed 0 ${TRAIN_ARGS:-}
# Bundled as float16 shards with its default sampling settings; images come out at 64 x 64.
$CLI export-model "$WORK/run/model" "$WORK/bundle" --preset ${PRESET:-dpm++-20} --guidance ${GUIDANCE:-2} --output-size 64
$CLI evaluate --model "$WORK/bundle" --out "$WORK/evaluation" --seeds 5 --device cpu ${EVAL_ARGS:-}
