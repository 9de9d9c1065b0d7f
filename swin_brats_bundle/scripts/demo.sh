#!/usr/bin/env bash
# `make demo`: realistic synthetic BraTS 2021 cases at 2 mm -> datalist -> the CPU quick recipe (configs/quick.json)
# -> evaluation of the held-out fold with pictures -> inference on two new cases. About 10 minutes on 2 CPU cores.
# Everything lands in demo_output/ at the repository root; the bundle's own models/ folder is left alone.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bundle="$repo/swin_brats_bundle"
out="$repo/demo_output"
python="$repo/.venv/bin/python"
data="$out/data"
seed="${DEMO_SEED:-2026}"   # not the seed the recipe was tuned on (1)
epochs="${DEMO_EPOCHS:-9}"
train_configs="['configs/train.json','configs/quick.json']"
overrides=(--bundle_root "$bundle" --dataset_dir "$data" --datalist "$out/datalist.json"
    --ckpt_dir "$out/models" --output_dir "$out/eval" --epochs "$epochs" --val_interval 3)
run_bundle() { (cd "$bundle" && "$python" -m monai.bundle run "$@" --meta_file configs/metadata.json --logging_file configs/logging.conf); }

rm -rf "$out"
mkdir -p "$out"
timings="$out/step_seconds.txt"
step() { local name=$1 t0; shift; t0=$(date +%s); "$@"; echo "$name $(($(date +%s) - t0))" >> "$timings"; }

echo "== 1/5 synthetic data (seed $seed): 20 labelled BraTS 2021 cases and 2 new unlabelled ones, 120x120x78 at 2 mm"
step data "$python" "$bundle/scripts/synthetic_data.py" --output_dir "$data" --num_cases 20 --spacing 2 --seed "$seed"
step new_cases "$python" "$bundle/scripts/synthetic_data.py" --output_dir "$out/new_cases" --num_cases 0 \
    --num_unlabelled 2 --spacing 2 --seed "$((seed + 1))"
echo "== 2/5 datalist: 5 folds, fold 0 (4 cases) held out for validation"
step datalist "$python" "$bundle/scripts/prepare_datalist.py" --dataset_dir "$data" --output "$out/datalist.json" \
    --num_folds 5
echo "== 3/5 training: quick recipe (configs/quick.json), $epochs epochs on 16 cases"
step training run_bundle training --config_file "$train_configs" "${overrides[@]}"
echo "== 4/5 evaluation of the 4 held-out cases with models/model.pt"
step evaluation run_bundle --config_file "['configs/train.json','configs/quick.json','configs/evaluate.json']" \
    "${overrides[@]}" --output_dir "$out/evaluation" --num_pictures 1
echo "== 5/5 inference on the 2 new cases"
step inference run_bundle inference --config_file "['configs/inference.json','configs/quick.json']" \
    --bundle_root "$bundle" --dataset_dir "$out/new_cases" --ckpt_dir "$out/models" --output_dir "$out/predictions"
# the numbers the README quotes (through bench/swin_brats/demo.py): demo_output/demo_summary.json
"$python" - "$out" "$seed" "$epochs" <<'PY'
import csv, json, sys
from pathlib import Path
out, seed, epochs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
steps = dict(line.split() for line in (out / "step_seconds.txt").read_text().splitlines())
log = [row for row in csv.DictReader(open(out / "eval" / "training_log.csv")) if row["val_mean_dice"]]
best = max(log, key=lambda row: float(row["val_mean_dice"]))
held_out = json.loads((out / "evaluation" / "summary.json").read_text())["metrics"]
summary = {
    "synthetic_data": True, "data_seed": seed, "epochs": epochs,
    "step_seconds": {name: int(seconds) for name, seconds in steps.items()},
    "total_seconds": sum(int(seconds) for seconds in steps.values()),
    "best_validation": {"epoch": int(best["epoch"]), "seconds": float(best["seconds"]),
                        **{k: round(float(best[k]), 4) for k in best if k.startswith("val_mean_dice")}},
    "evaluation_mean_dice": {r: round(held_out[f"dice_{r}"]["mean"], 4) for r in ("et", "tc", "wt")},
}
summary["evaluation_mean_dice"]["mean"] = round(sum(summary["evaluation_mean_dice"].values()) / 3, 4)
(out / "demo_summary.json").write_text(json.dumps(summary, indent=4) + "\n")
print(f"\nHeld-out validation mean Dice {summary['evaluation_mean_dice']['mean']:.3f} (ET/TC/WT "
      + " / ".join(f"{summary['evaluation_mean_dice'][r]:.3f}" for r in ("et", "tc", "wt"))
      + f"), best during training {best['val_mean_dice'][:5]} at epoch {best['epoch']};"
      + f" {summary['total_seconds'] / 60:.1f} min in all (synthetic data)")
PY
cat <<MSG

Demo finished (synthetic data).
  model:        $out/models/model.pt
  curves:       $out/eval/training_curves.png (training_log.csv beside it)
  metrics:      $out/evaluation/metrics.csv (per case) and $out/evaluation/summary.json
  pictures:     $out/evaluation/pictures/ (best and worst held-out case: truth beside prediction)
  predictions:  $out/evaluation/predictions/ (held-out fold) and $out/predictions/ (the 2 new cases)
  TensorBoard:  tensorboard --logdir $out/eval
MSG
