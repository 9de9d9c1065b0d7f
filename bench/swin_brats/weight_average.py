"""Does a weight average lift the quick recipe? The live weights against averages of them, from one training run on
the convergence benchmark's cases. SYNTHETIC DATA.

One quick-recipe run (configs/train.json + configs/quick.json, 20 epochs, validated every other epoch) on the
convergence cases (20 at 2 mm from `--data_seed`, fold 0 of 5 validated), with `ema_decay` on and the live weights
saved after every epoch. An exponential moving average never changes the live weights' path, so one run gives both
sides on the same trajectory:
- `ema_decay` (ignite's per-iteration EMA, the bundle's knob): the run's own validation, from its training_log.csv;
- the live weights of every epoch, and two averages of them (the last 3 epochs' weights, and an epoch-level EMA with
  decay 0.5), each scored afterwards on the same 4 validation cases by the bundle's evaluation (train + quick +
  evaluate.json, post-processing at its defaults), in one process.

    .venv/bin/python bench/swin_brats/weight_average.py [--data_seed 2026] [--ema_decay 0.95] [--work DIR]
        -> bench/results/swin_brats_weight_average.json and .png
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import torch
from common import BUNDLE, RESULTS, write_result
from convergence import TRAIN_FILES, bundle_run, config_list, read_curve, write_data
from matplotlib.figure import Figure

SAVE_EVERY_EPOCH = {  # an overlay: the live weights (not the average) after every epoch
    "+train#handlers": [
        {
            "_target_": "CheckpointSaver",
            "save_dir": "$@ckpt_dir + '/epochs'",
            "save_dict": {"network": "@network_def"},
            "save_interval": 1,
            "epoch_level": True,
        }
    ]
}


def train(work: Path, common: dict, ema_decay: float, epochs: int) -> None:
    overlay = work / "save_epochs.json"
    overlay.write_text(json.dumps(SAVE_EVERY_EPOCH, indent=4))
    configs = config_list(*TRAIN_FILES, str(overlay))
    settings = {**common, "epochs": epochs, "val_interval": 2, "ema_decay": ema_decay,
                "ckpt_dir": str(work / "models"), "output_dir": str(work / "eval")}  # fmt: skip
    bundle_run(configs, settings, work / "train.log")


def averaged(states: dict[int, dict], weights: dict[int, float]) -> dict[str, torch.Tensor]:
    total = sum(weights.values())
    return {key: sum(w * states[e][key].float() for e, w in weights.items()) / total for key in states[min(weights)]}


def score_epochs(work: Path, common: dict) -> dict[int, dict[str, float]]:
    """Validation mean Dice of every epoch's live weights and of the two averages, in one evaluation process."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / f"{name}.json") for name in ("train", "quick", "evaluate")])
    parser.read_meta(str(BUNDLE / "configs" / "metadata.json"))
    parser.update({**common, "ckpt_dir": str(work / "models"), "output_dir": str(work / "scores"),
                   "num_pictures": 0, "load_pretrain": False, "preflight_cache": None})  # fmt: skip
    parser.get_parsed_content("initialize")
    network, evaluator = (
        parser.get_parsed_content("validation_network"),
        parser.get_parsed_content("validate#evaluator"),
    )
    files = {int(re.search(r"=(\d+)\.pt$", p.name).group(1)): p for p in (work / "models" / "epochs").glob("*.pt")}
    states = {epoch: torch.load(files[epoch], weights_only=True) for epoch in sorted(files)}

    def score(state: dict[str, torch.Tensor]) -> float:
        network.load_state_dict(state)
        evaluator.run()
        return round(float(evaluator.state.metrics["val_mean_dice"]), 4)

    scores = {}
    for epoch in states:
        started = time.perf_counter()
        row = {"live": score(states[epoch])}
        if epoch % 2 == 0 and epoch >= 4:
            row["mean of the last 3 epochs"] = score(averaged(states, {e: 1.0 for e in (epoch - 2, epoch - 1, epoch)}))
        if epoch % 2 == 0:
            row["epoch-level EMA 0.5"] = score(averaged(states, {e: 0.5 ** (epoch - e) for e in range(1, epoch + 1)}))
        scores[epoch] = row
        print(f"epoch {epoch}: {row} ({time.perf_counter() - started:.0f} s)", flush=True)
    return scores


def plot(scores: dict[int, dict], ema: list[dict], ema_decay: float, path: Path) -> None:
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    ax = figure.subplots()
    for name in ("live", "mean of the last 3 epochs", "epoch-level EMA 0.5"):
        points = [(epoch, row[name]) for epoch, row in scores.items() if name in row]
        ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=f"{name} (scored afterwards)")
    ax.plot([p["epoch"] for p in ema], [p["val_mean_dice"] for p in ema], marker="s", ms=4, color="black",
            label=f"ema_decay {ema_decay} (the run's own validation)")  # fmt: skip
    ax.axhline(0.8, color="grey", lw=0.8, ls=":")
    title = "Quick recipe, one run: live weights and averages of them (synthetic data, 4 validation cases)"
    ax.set(xlabel="epoch", ylabel="validation mean Dice (ET, TC, WT)", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_seed", type=int, default=2026, help="the convergence benchmark's cases")
    parser.add_argument("--ema_decay", type=float, default=0.95, help="per iteration (16 iterations an epoch here)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--work", type=Path, default=None, help="keep the run here; a rerun reuses what is finished")
    parser.add_argument("--note", default="", help="how reused runs were made, recorded in the result")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="weight_average_"))
    work.mkdir(parents=True, exist_ok=True)
    data, datalist = write_data(work, args.data_seed)
    common = {"bundle_root": str(BUNDLE), "dataset_dir": str(data), "datalist": str(datalist), "fold": 0,
              "progress_bar": False}  # fmt: skip
    trained_here = not (work / "eval" / "training_log.csv").is_file()
    if trained_here:
        train(work, common, args.ema_decay, args.epochs)
    scores_file = work / "scores.json"
    scored_here = not scores_file.is_file()
    if scored_here:
        scores_file.write_text(json.dumps(score_epochs(work, common), indent=1))
    scores = {int(epoch): row for epoch, row in json.loads(scores_file.read_text()).items()}
    ema = read_curve(work / "eval" / "training_log.csv")
    picture = RESULTS / "swin_brats_weight_average.png"
    plot(scores, ema, args.ema_decay, picture)
    paired = [(p["epoch"], p["val_mean_dice"], scores[p["epoch"]]["live"]) for p in ema if p["epoch"] in scores]
    write_result(
        "swin_brats_weight_average",
        {
            "benchmark": "quick recipe, one run: live weights against ema_decay and two averages of epoch weights",
            "synthetic_data": True,
            "data": {"seed": args.data_seed, "cases": 20, "spacing_mm": 2, "validation_fold": 0, "validation_cases": 4},
            "ema_decay": args.ema_decay,
            "epochs": args.epochs,
            "trained_in_this_invocation": trained_here,
            "scored_in_this_invocation": scored_here,
            "note": args.note,
            "scores_by_epoch": scores,
            "ema_decay_validation": ema,
            "best": {
                "live": max(row["live"] for row in scores.values()),
                f"ema_decay {args.ema_decay}": max(p["val_mean_dice"] for p in ema),
                "mean of the last 3 epochs": max(r.get("mean of the last 3 epochs", 0) for r in scores.values()),
                "epoch-level EMA 0.5": max(r.get("epoch-level EMA 0.5", 0) for r in scores.values()),
            },
            "ema_minus_live_at_validated_epochs": {epoch: round(e - live, 4) for epoch, e, live in paired},
            "picture": str(picture.relative_to(RESULTS.parent.parent)),
        },
    )


if __name__ == "__main__":
    main()
