#!/usr/bin/env bash
# Reproduces the GPU reference run (clevr-ddpm-base, not bundled yet: see docs/pretrained.md)
# from scratch on one GPU, then evaluates it at three guidance scales.
#
#   bash examples/pretrained/base_gpu.sh [RUN_DIR]
#
# On one H200 (sharing it with an evaluator job) this run was stopped by a 5-minute time limit
# at step 2,383; --steps 2383 replays it without the limit.
# Data: 20,000 random i-CLEVR-style scenes (60,000 nested 64 x 64 frames) rendered on the GPU
# by the built-in renderer while training (each frame once, then kept on the GPU: --preload).
# Network: ConditionalUNet's default (12.7 M parameters) without dropout. Training: batch 128,
# AdamW 5e-4 after 500 warm-up steps, EMA 0.999, min-SNR-5 weighting, bf16 autocast.
# Extra arguments in TRAIN_ARGS / EVAL_ARGS are appended (argparse: the last value wins), e.g.
# TRAIN_ARGS="--render-data 8 --steps 2 --cpu" for a smoke test.
set -euo pipefail
RUN=${1:-runs/clevr-ddpm-base}
CLI=${CLI:-clevr-diffusion}
# shellcheck disable=SC2086  # TRAIN_ARGS and EVAL_ARGS are word lists
$CLI train --render-data 20000 --preload --num-workers 8 --image-size 64 --output-dir "$RUN" \
    --base-channels 32 --channel-mults 1,2,4,8 --attention-stages 2 --dropout 0 \
    --steps 2383 --batch-size 128 --lr 5e-4 --warmup-steps 500 --ema-decay 0.999 \
    --snr-gamma 5 --checkpoint-every 2000 --sample-every 0 --log-every 100 --seed 0 ${TRAIN_ARGS:-}
for guidance in 1.5 2 3; do
    $CLI evaluate --model "$RUN/model" --out "$RUN/evaluation-g$guidance" --preset dpm++-20 \
        --guidance "$guidance" --seeds 5 ${EVAL_ARGS:-}
done
