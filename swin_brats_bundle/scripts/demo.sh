#!/usr/bin/env bash
# `make demo`: synthetic BraTS 2021 cases -> datalist -> a small CPU training -> evaluation -> inference.
# Everything lands in demo_output/ at the repository root; the bundle's own models/ folder is left alone.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bundle="$repo/swin_brats_bundle"
out="$repo/demo_output"
python="$repo/.venv/bin/python"
data="$out/data"
# Small enough for a 2-core CPU in a few minutes; raise epochs/cases for a model that segments well.
overrides=(--bundle_root "$bundle" --dataset_dir "$data" --datalist "$out/datalist.json"
    --ckpt_dir "$out/models" --output_dir "$out/eval" --feature_size 12 --roi_size "[64,64,64]"
    --num_workers 0 --num_folds 4 --learning_rate 0.001 --sw_batch_size 2)
run_bundle() { (cd "$bundle" && "$python" -m monai.bundle run "$@" --meta_file configs/metadata.json --logging_file configs/logging.conf); }

rm -rf "$out"
echo "== 1/5 synthetic BraTS 2021 data (8 labelled + 1 unlabelled case, 64x64x48 voxels)"
"$python" "$bundle/scripts/synthetic_data.py" --output_dir "$data" --layout brats2021 --num_cases 8 --num_unlabelled 1 --shape 64 64 48
echo "== 2/5 datalist"
"$python" "$bundle/scripts/prepare_datalist.py" --dataset_dir "$data" --output "$out/datalist.json" --num_folds 4
echo "== 3/5 training (feature size 12, ROI 64, ${DEMO_EPOCHS:-3} epochs)"
run_bundle training --config_file configs/train.json "${overrides[@]}" --epochs "${DEMO_EPOCHS:-3}"
echo "== 4/5 evaluation of fold 0"
run_bundle --config_file "['configs/train.json','configs/evaluate.json']" "${overrides[@]}" --output_dir "$out/evaluation"
echo "== 5/5 inference on every case"
run_bundle inference --config_file configs/inference.json --bundle_root "$bundle" --dataset_dir "$data" \
    --ckpt_dir "$out/models" --output_dir "$out/predictions" --feature_size 12 --roi_size "[64,64,64]" \
    --num_workers 0 --sw_batch_size 2
cat <<MSG

Demo finished.
  model:        $out/models/model.pt
  metrics:      $out/evaluation/metrics.csv (per case) and $out/evaluation/summary.json
  pictures:     $out/evaluation/pictures/
  curves:       $out/eval/training_curves.png
  predictions:  $out/evaluation/predictions/ (validation fold) and $out/predictions/ (all cases)
  TensorBoard:  $out/eval (tensorboard --logdir $out/eval)
MSG
