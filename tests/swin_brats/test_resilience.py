"""Scale-out and resilience: atomic checkpoints, kill and resume, torchrun DDP on CPU (gloo): per-rank shards, two
launchers as two nodes (seeded determinism: test_datasets.py)."""

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE, TINY, run_bundle
from ignite.engine import Engine
from monai.bundle import ConfigWorkflow
from monai.data import NibabelWriter
from monai.networks.nets import SwinUNETR
from scripts.checkpoint import TRAINING_CHECKPOINT, resume_training, save_atomic
from scripts.distributed import PeerLoss
from scripts.errors import InputError
from scripts.writer import PredictionWriter

TRAINER_EPOCH_DONE = re.compile(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete")
BEST_METRIC = re.compile(r"Got new best metric of val_mean_dice: ([0-9.eE-]+)")


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full")


def test_save_atomic_never_leaves_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    save_atomic({"weight": torch.ones(2)}, target)
    with pytest.raises(RuntimeError, match="disk full"):
        save_atomic({"weight": Unpicklable()}, target)  # fails half-way through serialising
    assert torch.equal(torch.load(target, weights_only=True)["weight"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    (tmp_path / ".model.pt.abc123.partial").write_bytes(b"left by a killed writer")
    save_atomic({"weight": torch.zeros(2)}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def _train_command(data: Path, ckpt: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "configs/train.json",
            "--dataset_dir", str(data), "--num_folds", "3", "--ckpt_dir", str(ckpt), "--output_dir", str(ckpt),
            "--epochs", str(epochs), "--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf",
            *TINY, *extra]  # fmt: skip


DDP_ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
MULTI_GPU = "['configs/train.json','configs/multi_gpu_train.json']"
# Two nodes: PyTorch's own output initialisation (`output_bias_prior` 0) paints part of every brain from the start, so
# each validation case scores a Dice of its own (not 0 for all, which would hide a broken gathering); a peer that goes
# silent is given up after DIST_TIMEOUT_S (the shortest wait that the ranks' own imbalance never reaches here).
DIST_TIMEOUT_S = 30
TWO_NODES = (*TINY, "--output_bias_prior", "0", "--dist_timeout_s", str(DIST_TIMEOUT_S))
LOST_PEER = re.compile(
    rf"error: rank [01] of 2 lost its peer ranks \(.+\): a node died, or did not answer within "
    rf"dist_timeout_s={DIST_TIMEOUT_S} s; after fixing it, restart every node with --resume True"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_each_rank_caches_a_disjoint_half_and_an_epoch_visits_every_case_once(make_dataset, tmp_path: Path) -> None:
    """Two gloo ranks under torchrun, the real configs: 4 training cases, 2 cached per rank, each trained once."""
    data = make_dataset("brats2021", num_cases=6, num_unlabelled=0, seed=5)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(Path(__file__).with_name("shard_probe.py")), str(tmp_path), str(data), "num_folds=3"]  # fmt: skip
    probe = subprocess.run(command, cwd=BUNDLE, env=DDP_ENV, capture_output=True, text=True, timeout=600)
    assert probe.returncode == 0, (probe.stdout + probe.stderr)[-6000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    everything = ranks[0]["all_training"]
    assert len(everything) == 4 and ranks[1]["all_training"] == everything
    shards = [set(rank["shard"]) for rank in ranks]
    assert [len(shard) for shard in shards] == [2, 2] and not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(everything)
    assert [rank["cached"] for rank in ranks] == [2, 2], "each rank caches its own half, not every case"
    visited = ranks[0]["visited"] + ranks[1]["visited"]
    assert sorted(visited) == sorted(everything), f"one epoch, both ranks: every case exactly once ({visited})"
    validation = [set(rank["validation"]) for rank in ranks]
    assert [len(part) for part in validation] == [1, 1] and not validation[0] & validation[1]


def _node(port: int, out: Path, data: Path, log: Path, *extra: str) -> subprocess.Popen:
    """One of two torchrun launchers of one process each, meeting at a c10d rendezvous on 127.0.0.1 (two "nodes").

    The worker's stderr is also kept apart from the launcher's, under `<log>.worker/` (torchrun's `--tee`)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
               "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=brats",
               "--log-dir", str(log.with_suffix(".worker")), "--tee", "2",
               "-m", "monai.bundle", "run", "training", "--config_file", MULTI_GPU,
               "--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf",
               "--dataset_dir", str(data), "--num_folds", "3", "--ckpt_dir", str(out / "models"),
               "--output_dir", str(out / "train"), "--epochs", "2", "--val_interval", "2",
               *TWO_NODES, *extra]  # fmt: skip
    with log.open("w") as sink:  # a file, not a pipe: a full pipe would stall the launcher while the test polls
        # LOGLEVEL INFO: the launcher logs its rendezvous, its exit barrier and why it stopped, for a failure's report
        agent_logs = {**DDP_ENV, "LOGLEVEL": "INFO"}
        return subprocess.Popen(command, cwd=BUNDLE, env=agent_logs, stdout=sink, stderr=subprocess.STDOUT)


def _worker_stderr(log: Path) -> str:
    """The stderr of a `_node`'s one worker, as its launcher's `--tee` kept it."""
    return "".join(path.read_text() for path in sorted(log.with_suffix(".worker").rglob("stderr.log")))


def _tree(launcher: subprocess.Popen) -> set[int]:
    """A launcher and every process under it: torchrun starts its workers in sessions of their own."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while being listed
    tree, frontier = set(), {launcher.pid}
    while frontier:
        tree |= frontier
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - tree
    return tree


def _signal_node(launcher: subprocess.Popen, signum: int) -> None:
    """Send `signum` to a launcher and every process under it."""
    for pid in _tree(launcher):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _rendezvous_host(launchers: list[subprocess.Popen], port: int) -> int:
    """The index of the launcher listening on the rendezvous `port`: the one hosting the c10d store (on one machine
    the first launcher to bind the endpoint; on a cluster the node named in `--rdzv_endpoint`)."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                sockets.add(f"socket:[{fields[9]}]")
    for index, launcher in enumerate(launchers):
        for pid in _tree(launcher):
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in sockets for fd in Path(f"/proc/{pid}/fd").iterdir()):
                    return index
    raise AssertionError(f"no launcher listens on the rendezvous port {port}")


def _kill_node(launcher: subprocess.Popen) -> None:
    """SIGKILL a launcher and every process under it."""
    _signal_node(launcher, signal.SIGKILL)
    launcher.wait()


def _kill_run(marker: Path) -> None:
    """SIGKILL every process whose command line names `marker` (launchers and workers alike, orphaned or not)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if str(marker).encode() in cmdline.read_bytes() and int(cmdline.parent.name) != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)


def test_two_nodes_train_resume_together_after_one_is_killed_and_match_one_process(
    make_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two launchers train; one "node" freezes after epoch 1: the other ends by itself in one line within the
    process-group timeout; the frozen one is killed; both resume; the gathered Dice is one process's."""
    data = make_dataset("brats2021", num_cases=6, num_unlabelled=0, seed=5)
    logs = [tmp_path / f"{name}.log" for name in ("first", "second", "first_resumed", "second_resumed")]
    port, checkpoint = _free_port(), tmp_path / "models" / TRAINING_CHECKPOINT
    nodes = [_node(port, tmp_path, data, log) for log in logs[:2]]
    try:
        deadline = time.monotonic() + 600
        while not checkpoint.exists() and nodes[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert checkpoint.exists(), logs[0].read_text()[-6000:]
        # a node that hangs (SIGSTOP: its sockets stay open, so no "connection closed" tells the survivor): the
        # survivor waits in its next collective for dist_timeout_s, then must end by itself, in one line. The frozen
        # node is the one not hosting the rendezvous store, as on a cluster where any node but the rdzv_endpoint's
        # dies (torchrun's own agent waits on a lost store for timeouts of its own, which dist_timeout_s does not set)
        host = _rendezvous_host(nodes, port)
        survivor_node, frozen_node = nodes[host], nodes[1 - host]
        _signal_node(frozen_node, signal.SIGSTOP)
        frozen = time.monotonic()
        bound = DIST_TIMEOUT_S + 150  # + the rest of an iteration and the launcher's shutdown, on a loaded machine
        with contextlib.suppress(subprocess.TimeoutExpired):
            survivor_node.wait(timeout=bound)
        waited = time.monotonic() - frozen
        assert survivor_node.returncode is not None, f"the survivor still runs {waited:.0f} s after its peer froze"
        survivor = _worker_stderr(logs[host])
        assert survivor_node.returncode != 0 and LOST_PEER.fullmatch(survivor.strip().splitlines()[-1]), survivor[
            -6000:
        ]
        assert "Traceback" not in survivor and survivor.count("error:") == 1, survivor[-6000:]
        _kill_node(frozen_node)
        _kill_run(tmp_path)  # a launcher that failed on the lost store may leave its worker behind
        assert torch.load(checkpoint, weights_only=True)["trainer"]["epoch"] == 1
        assert not [p.name for p in checkpoint.parent.iterdir() if p.name.startswith(".")], "no half-written file"
        assert not (tmp_path / "models" / "model.pt").exists(), "no validation before epoch 2"

        port = _free_port()
        nodes += [_node(port, tmp_path, data, log, "--resume", "True") for log in logs[2:]]
        for node in nodes[2:]:
            node.wait(timeout=600)
    finally:
        _kill_run(tmp_path)
        for node in nodes:
            node.wait()
    resumed = [log.read_text() for log in logs[2:]]
    # a launcher that fails often only reports the other one's failure (its rendezvous store went away): show both
    assert [node.returncode for node in nodes[2:]] == [0, 0], "\n".join(log[-4000:] for log in resumed)
    for log in resumed:
        assert "resumed from epoch 1" in log
        assert [int(e) for e in TRAINER_EPOCH_DONE.findall(log)] == [2], "epoch 1 is not trained again"
    shards = [re.search(r"rank (\d) of 2: 2 of the 4 training case\(s\)", log) for log in resumed]
    assert sorted(int(match.group(1)) for match in shards if match) == [0, 1]
    gathered = [float(v) for log in resumed for v in BEST_METRIC.findall(log)]
    assert len(gathered) == 2 and gathered[0] == gathered[1], f"each rank logs the gathered metric: {gathered}"
    assert "".join(resumed).count("models/model.pt (val_mean_dice") == 1, "only rank 0 saves"
    assert torch.load(checkpoint, weights_only=True)["trainer"]["epoch"] == 2
    SwinUNETR(4, 3, feature_size=12).load_state_dict(torch.load(tmp_path / "models" / "model.pt", weights_only=True))
    assert not list((tmp_path / "models").rglob("*.partial*")), "temporary files of the killed run are cleaned up"

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as the ranks ran: the same summation order, the same voxels
    single = run_bundle("--config_file", "['configs/train.json','configs/evaluate.json']", "--dataset_dir", str(data),
                        "--num_folds", "3", "--ckpt_dir", str(tmp_path / "models"), *TWO_NODES,
                        "--output_dir", str(tmp_path / "evaluation"))  # fmt: skip
    one_process = [float(v) for v in BEST_METRIC.findall(single.stdout + single.stderr)]
    assert one_process == pytest.approx(gathered[:1], abs=1e-6)
    with open(tmp_path / "evaluation" / "metrics.csv", newline="") as f:
        cases = [np.mean([float(row[f"dice_{r}"]) for r in ("tc", "wt", "et")]) for row in csv.DictReader(f)]
    # the 2 validation cases the two ranks shared score above 0 and apart (about 0.006 and 0.02): a rank's case lost or
    # counted twice in the gathering would move the mean by half their difference, thousands of times the tolerance
    assert len(cases) == 2 and min(cases) > 0.002 and abs(cases[0] - cases[1]) > 0.005, cases
    assert one_process[0] == pytest.approx(np.mean(cases), abs=1e-5)


def _failing_engine(error: BaseException, debug: bool = False) -> Engine:
    """An engine whose first iteration raises `error`, with `PeerLoss` as its one handler."""

    def step(engine: Engine, batch: int) -> None:
        raise error

    engine = Engine(step)
    PeerLoss(timeout_s=30, debug=debug).attach(engine)
    return engine


def test_a_lost_peer_ends_in_one_line_and_any_other_error_goes_on_unchanged() -> None:
    gloo = RuntimeError("[../gloo/transport/tcp/pair.cc:553] Connection closed by peer [10.0.0.2]:3999")
    wrapped = TypeError("unable to sync buffer contents")  # how MONAI's metric gathering re-raises it
    wrapped.__cause__ = gloo
    for error in (gloo, wrapped, torch.distributed.DistNetworkError("Connection reset by peer")):
        with pytest.raises(SystemExit) as stopped:
            _failing_engine(error).run([0])
        assert re.fullmatch(
            r"error: rank 0 of 1 lost its peer ranks \(Connection [^\n]+ --resume True", str(stopped.value)
        )
    with pytest.raises(InputError) as debug:  # `--debug True`: the traceback, with the collective's error as cause
        _failing_engine(gloo, debug=True).run([0])
    assert debug.value.__cause__ is gloo
    # an error of the rank itself is not swallowed (a handler of EXCEPTION_RAISED replaces ignite's own re-raise)
    with pytest.raises(ZeroDivisionError):
        _failing_engine(ZeroDivisionError("division by zero")).run([0])


def test_a_process_group_timeout_must_be_positive(tmp_path: Path) -> None:
    configs = [str(BUNDLE / "configs" / name) for name in ("train.json", "multi_gpu_train.json")]
    workflow = ConfigWorkflow(config_file=configs, workflow_type="train", bundle_root=str(BUNDLE),
                              dataset_dir=str(tmp_path), output_dir=str(tmp_path), dist_timeout_s=0)  # fmt: skip
    with pytest.raises(SystemExit, match=r"^error: dist_timeout_s=0 is not allowed: a number > 0$"):
        workflow.initialize()
    assert not torch.distributed.is_initialized()


class CreatesAFile:
    """A pickle payload: unpickling it with plain `torch.load` would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_inference_refuses_a_pickle_payload_and_names_the_checkpoint(make_dataset, tmp_path: Path) -> None:
    marker = tmp_path / "payload_ran"
    torch.save({"model": CreatesAFile(marker)}, tmp_path / "model.pt")
    result = run_bundle("inference", "--config_file", "configs/inference.json",
                        "--dataset_dir", str(make_dataset("brats2021")), "--ckpt_dir", str(tmp_path),
                        "--output_dir", str(tmp_path / "out"), *TINY, expect_ok=False)  # fmt: skip
    assert result.returncode != 0
    assert not marker.exists(), "the checkpoint's payload ran"
    assert f"error: refused to load {tmp_path / 'model.pt'}: not a plain weights file" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_bundle("inference", "--config_file", "configs/inference.json",
                         "--dataset_dir", str(make_dataset("brats2021")), "--ckpt_dir", str(tmp_path / "none"),
                         *TINY, expect_ok=False)  # fmt: skip
    assert missing.returncode != 0 and f"error: no trained model at {tmp_path / 'none' / 'model.pt'}" in missing.stderr


def _train_state(network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return {"model": network.state_dict(), "optimizer": optimizer.state_dict(), "trainer": {"epoch": 1, "iteration": 2}}


def test_resume_without_a_usable_checkpoint_stops_with_one_line_naming_it(make_dataset, tmp_path: Path) -> None:
    missing = run_bundle(*_train_command(make_dataset("brats2021"), tmp_path / "none", 1, "--resume", "True")[4:],
                         expect_ok=False)  # fmt: skip
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == (
        f"error: --resume True, but there is no training checkpoint at {tmp_path / 'none' / TRAINING_CHECKPOINT}; "
        "train without --resume first."
    )
    assert "Epoch[" not in missing.stdout

    network = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(network.parameters())
    path = tmp_path / TRAINING_CHECKPOINT
    torch.save(_train_state(network, optimizer), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a truncated copy
    with pytest.raises(SystemExit) as stopped:
        resume_training(Engine(lambda e, b: None), str(tmp_path), network, optimizer)
    assert str(stopped.value.code).startswith(f"error: refused to load {path}: not a training checkpoint (")
    torch.save(network.state_dict(), path)  # a model.pt copied over checkpoint.pt
    with pytest.raises(SystemExit, match=f"error: {re.escape(str(path))} does not fit the configured network"):
        resume_training(Engine(lambda e, b: None), str(tmp_path), network, optimizer)
    with pytest.raises(InputError, match="does not fit") as debug:  # `--debug True`: the traceback, with its cause
        resume_training(Engine(lambda e, b: None), str(tmp_path), network, optimizer, debug=True)
    assert isinstance(debug.value.__cause__, KeyError)
    torch.save(_train_state(network, optimizer), path)
    trainer = Engine(lambda e, b: None)
    assert resume_training(trainer, str(tmp_path), network, optimizer) == 1 and trainer.state.iteration == 2


def _prediction_writer(writer_class: type, shape: tuple[int, int, int]) -> NibabelWriter:
    writer = writer_class(output_dtype=np.uint8)
    writer.set_data_array(torch.ones(1, *shape), channel_dim=0)
    writer.set_metadata({"affine": torch.eye(4), "original_affine": torch.eye(4)}, resample=False)
    return writer


def test_a_prediction_write_that_dies_half_way_leaves_no_file_under_the_final_name(tmp_path, monkeypatch) -> None:
    """MONAI's `NibabelWriter` (`SaveImaged`'s default) leaves the torn file; the configs' writer does not."""
    real_save = nib.save

    def dies_half_way(image: nib.Nifti1Image, filename: str) -> None:
        real_save(image, filename)
        Path(filename).write_bytes(Path(filename).read_bytes()[:100])
        raise KeyboardInterrupt  # what the process sees of a signal, or MemoryError, or a full disk

    monkeypatch.setattr(nib, "save", dies_half_way)
    for writer_class, leaves_torn_file in ((NibabelWriter, True), (PredictionWriter, False)):
        target = tmp_path / writer_class.__name__ / "BraTS2021_00000.nii.gz"
        target.parent.mkdir()
        with pytest.raises(KeyboardInterrupt):
            _prediction_writer(writer_class, (20, 20, 20)).write(target)
        assert target.exists() == leaves_torn_file, writer_class
    assert list((tmp_path / "PredictionWriter").iterdir()) == []  # its temporary file is gone too
    monkeypatch.setattr(nib, "save", real_save)
    _prediction_writer(PredictionWriter, (20, 20, 20)).write(target)
    assert nib.load(target).shape == (20, 20, 20) and oct(target.stat().st_mode & 0o777) == "0o644"


def test_sigkill_during_inference_leaves_no_partial_prediction(make_dataset, tmp_path: Path) -> None:
    data = make_dataset("brats2021", num_cases=5, num_unlabelled=0, seed=5)
    network = SwinUNETR(4, 3, feature_size=12)
    torch.save(network.state_dict(), tmp_path / "model.pt")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", "configs/inference.json",
               "--dataset_dir", str(data), "--ckpt_dir", str(tmp_path), "--output_dir", str(out), *TINY]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.Popen(command, cwd=BUNDLE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def predictions() -> list[Path]:
        return sorted(p for p in out.glob("*.nii.gz") if not p.name.startswith("."))

    deadline = time.monotonic() + 600
    while not predictions() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "inference ended before it could be killed"
    written = predictions()
    assert 1 <= len(written) < 5, "killed mid-way: some cases written, not all"
    for path in written:  # every file under a final name is complete
        assert np.asarray(nib.load(path).dataobj).shape == (64, 64, 48), path
    others = {p.name for p in out.iterdir()} - {p.name for p in written} - {"errors.json"}
    assert all(re.fullmatch(r"\.BraTS2021_\d{5}\.nii\.gz\.\w+\.partial\.nii\.gz", name) for name in others), others
