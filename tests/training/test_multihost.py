"""Two JAX processes on localhost train exactly as one process with the same global batch.

The test starts two processes (``jax.distributed.initialize`` over localhost, gloo CPU collectives,
2 CPU devices each: a 4-device mesh) that run a few steps of the generic loop on the PNA multitask
``tiny`` config and on the VQA counting ``tiny`` config, and draw a few batches of the grain image
pipeline. Meanwhile this process runs the same on 4 of its devices as a single process. Asserted:
equal loss trajectories and final parameters, and that each process read only its slice of every
global batch (disjoint, together the one-process batch). Run as a script, this file is one of the
two processes: ``python test_multihost.py <process_id> <port> <spec.json>``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MESH = {"data": 4, "fsdp": 1, "model": 1}
STEPS = 3
PIPELINE_STEPS, PIPELINE_BATCH, PIPELINE_EXAMPLES = 4, 8, 20
CHILD_XLA_FLAGS = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
CHILD_TIMEOUT_S = 300


def load_config(name: str, variant: str):
    """``configs/<name>.py:<variant>``."""
    spec = importlib.util.spec_from_file_location(f"configs_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def short_run(config):
    """``config`` for a few logged SGD steps, with no evaluation and one synchronous checkpoint.

    SGD, not the configs' Adam: the cross-process reductions round differently (~1e-7), and Adam's first
    updates, lr * g / |g|, turn that round-off into whole steps for gradients that are zero up to it.
    """
    config.optimizer = {"name": "sgd", "lr": 0.01, "b1": 0.9, "schedule": "constant"}
    config.num_train_steps = STEPS
    config.log_every_steps = 1
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 0
    config.async_checkpoints = False
    return config


def pna_config(cache_dir: str):
    config = load_config("pna_multitask", "tiny")
    config.mesh = MESH
    config.data.cache_dir = cache_dir
    config.data.shuffle_batches = True
    return config


def vqa_config(paths: dict):
    config = load_config("vqa_counting", "tiny")
    config.mesh = MESH
    config.data.synthetic = False
    for key in ("features", "train_questions", "train_annotations", "val_questions", "val_annotations"):
        config.data[key] = paths[key]
    return config


def record_reads(iterator) -> list:
    """Makes ``iterator`` log the example indices of every shard it reads; returns the log."""
    reads, read = [], iterator.read

    def logged_read(shards):
        reads.append([np.asarray(s).tolist() for s in shards])
        return read(shards)

    iterator.read = logged_read
    return reads


def train_briefly(experiment, config, workdir: str) -> dict:
    """A few steps of the generic loop; the losses, final parameters and the shards this process read."""
    import jax

    from jaxmodels.training.loop import train

    reads = record_reads(experiment.train_iter)
    experiment = dataclasses.replace(experiment, eval_step=None, eval_iter_fn=None, eval_metrics_fn=None,
                                     on_eval=None)
    result = train(experiment, config, workdir)
    params = {jax.tree_util.keystr(path): np.asarray(leaf.addressable_data(0))
              for path, leaf in jax.tree_util.tree_leaves_with_path(result.state["params"])}
    return {"reads": reads[:STEPS], "params": params}


def run_pna(spec: dict, workdir: str) -> dict:
    from jaxmodels.projects.pna import multitask

    config = pna_config(spec["pna_cache"])
    dataset = multitask.load_data(config)
    config = short_run(multitask.resolve_config(config, dataset))
    experiment, _ = multitask.make_training(config, dataset)
    return train_briefly(experiment, config, workdir)


def run_vqa(spec: dict, workdir: str) -> dict:
    from jaxmodels.projects.vqa_counting import experiment as vqa

    config = vqa_config(spec["vqa_paths"])
    data = vqa.prepare_data(config, workdir)
    config = short_run(vqa.configure(config, data))
    return train_briefly(vqa.make_experiment(config, data, workdir), config, workdir)


class IndexSource:
    """Records whose label is their index."""

    def __len__(self):
        return PIPELINE_EXAMPLES

    def __getitem__(self, index):
        return {"label": np.int32(index)}


def run_pipeline() -> dict:
    """The image pipeline's batches: each process's labels, and a jitted sum over the global batch."""
    import jax
    import jax.numpy as jnp

    from jaxmodels.data import make_train_iterator
    from jaxmodels.training import mesh as mesh_lib

    iterator = make_train_iterator(IndexSource(), preprocess=lambda r, rng: {"label": r["label"], "draw": rng.random()},
                                   global_batch_size=PIPELINE_BATCH, seed=0)
    sharding = mesh_lib.batch_sharding(mesh_lib.make_mesh(MESH))
    total = jax.jit(lambda b: jnp.sum(b["label"] * b["draw"]), out_shardings=mesh_lib.replicated(sharding.mesh))
    labels, sums = [], []
    for _ in range(PIPELINE_STEPS):
        batch = next(iterator)
        labels.append(batch["label"].tolist())
        sums.append(float(total(mesh_lib.host_local_to_global(batch, sharding)).addressable_data(0)))
    return {"labels": labels, "sums": sums}


def losses(workdir: str) -> list[float]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return [r["train/loss"] for r in records if "train/loss" in r]


def save(path: str, result: dict) -> None:
    params = result.pop("params", None)
    if params is not None:
        np.savez(path + ".npz", **params)
    with open(path + ".json", "w") as f:
        json.dump(result, f)


def exit_when_orphaned_or_late(parent_pid: int, timeout_s: float) -> None:
    """A daemon thread that ends this process if the test process dies or ``timeout_s`` pass: never hang CI."""
    deadline = time.monotonic() + timeout_s

    def watch():
        while os.getppid() == parent_pid and time.monotonic() < deadline:
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=watch, name="watchdog", daemon=True).start()


def child_main(process_id: int, port: int, spec_path: str) -> None:
    """One of the two processes: initialise JAX's distributed runtime, run every task, save the results."""
    import jax

    exit_when_orphaned_or_late(os.getppid(), CHILD_TIMEOUT_S)
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=process_id)
    assert jax.process_count() == 2 and jax.device_count() == 4
    with open(spec_path) as f:
        spec = json.load(f)
    out = spec["out"]
    save(os.path.join(out, f"pna_{process_id}"), run_pna(spec, os.path.join(out, "pna_run")))
    save(os.path.join(out, f"vqa_{process_id}"), run_vqa(spec, os.path.join(out, "vqa_run")))
    save(os.path.join(out, f"pipeline_{process_id}"), run_pipeline())
    jax.distributed.shutdown()


# ------------------------------------------------------------------------------------------- the test side


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_children(spec_path: str, out: str) -> list[tuple[subprocess.Popen, str]]:
    env = {**os.environ, "XLA_FLAGS": CHILD_XLA_FLAGS, "JAX_PLATFORMS": "cpu"}
    port = free_port()
    children = []
    for process_id in range(2):
        log_path = os.path.join(out, f"child_{process_id}.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(process_id), str(port), spec_path],
                                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        children.append((proc, log_path))
    return children


def kill(children) -> None:
    for proc, _ in children:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def wait_for(children, deadline: float) -> None:
    """Waits for both children until ``deadline`` (monotonic); kills both as soon as one fails or time is up."""
    try:
        while any(proc.poll() is None for proc, _ in children) and time.monotonic() < deadline:
            if any(proc.poll() not in (None, 0) for proc, _ in children):
                break
            time.sleep(0.2)
    finally:
        kill(children)
    if any(proc.returncode != 0 for proc, _ in children):
        logs = "\n".join(f"--- process {i} (exit {proc.returncode}):\n" + open(path).read()[-4000:]
                         for i, (proc, path) in enumerate(children))
        pytest.fail(f"a multi-host process failed or ran past {CHILD_TIMEOUT_S} s:\n{logs}")


def write_vqa_data(directory: str) -> dict:
    from jaxmodels.projects.vqa_counting.synthetic_scenes import write_synthetic_vqa

    config = load_config("vqa_counting", "tiny")
    syn = config.data.synthetic_scenes
    return write_synthetic_vqa(directory, num_train_images=int(syn.num_train_images),
                               num_val_images=int(syn.num_val_images), seed=int(syn.seed),
                               num_boxes=int(config.data.num_boxes), num_classes=int(syn.num_classes),
                               feature_dim=int(syn.feature_dim), max_objects=int(syn.max_objects),
                               max_duplicates=int(syn.max_duplicates), max_answers=int(config.data.max_answers))


def load_result(path: str) -> dict:
    with open(path + ".json") as f:
        result = json.load(f)
    if os.path.exists(path + ".npz"):
        with np.load(path + ".npz") as params:
            result["params"] = dict(params)
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{task: (one-process result, [process 0 result, process 1 result])}, plus the loss trajectories."""
    from jaxmodels.projects.pna import multitask

    root = tmp_path_factory.mktemp("multihost")
    out = str(root / "out")
    os.makedirs(out)
    spec = {"out": out, "pna_cache": str(root / "pna_cache"), "vqa_paths": write_vqa_data(str(root / "vqa_data"))}
    multitask.load_data(pna_config(spec["pna_cache"]))  # generates the cache once, before the children read it
    spec_path = os.path.join(out, "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    children = start_children(spec_path, out)
    try:
        reference = {"pna": run_pna(spec, str(root / "pna_single")), "vqa": run_vqa(spec, str(root / "vqa_single")),
                     "pipeline": run_pipeline()}
    except BaseException:
        kill(children)
        raise
    wait_for(children, deadline)
    reference["pna"]["losses"] = losses(str(root / "pna_single"))
    reference["vqa"]["losses"] = losses(str(root / "vqa_single"))
    processes = {task: [load_result(os.path.join(out, f"{task}_{i}")) for i in range(2)] for task in reference}
    for task in ("pna", "vqa"):
        processes[task][0]["losses"] = losses(os.path.join(out, f"{task}_run"))
    return {task: (reference[task], processes[task]) for task in reference}


@pytest.mark.parametrize("task", ["pna", "vqa"])
def test_two_processes_train_as_one_on_the_same_global_batch(runs, task):
    single, (first, second) = runs[task]
    assert len(single["losses"]) == STEPS and np.all(np.isfinite(single["losses"]))
    np.testing.assert_allclose(first["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    assert sorted(first["params"]) == sorted(second["params"]) == sorted(single["params"])
    for key, value in single["params"].items():
        np.testing.assert_allclose(first["params"][key], value, rtol=1e-5, atol=1e-5, err_msg=key)
        np.testing.assert_array_equal(second["params"][key], first["params"][key], err_msg=key)


@pytest.mark.parametrize("task", ["pna", "vqa"])
def test_each_process_reads_only_its_slice_of_the_global_batch(runs, task):
    single, (first, second) = runs[task]
    assert len(single["reads"]) == len(first["reads"]) == len(second["reads"]) == STEPS
    for step, (whole, mine, theirs) in enumerate(zip(single["reads"], first["reads"], second["reads"])):
        flat = [sum(shards, []) for shards in (whole, mine, theirs)]  # example indices
        assert len(flat[1]) == len(flat[2]) == len(flat[0]) // 2 > 0, step
        assert not set(flat[1]) & set(flat[2]), step
        assert flat[1] + flat[2] == flat[0], step  # process 0's rows, then process 1's: the one-process batch
        if len(whole) > 1:  # graphs: one shard per device, half of them on each process
            assert mine + theirs == whole, step


def test_image_pipeline_processes_read_disjoint_halves_of_the_global_batch(runs):
    single, (first, second) = runs["pipeline"]
    for whole, mine, theirs in zip(single["labels"], first["labels"], second["labels"]):
        assert len(mine) == len(theirs) == PIPELINE_BATCH // 2
        assert not set(mine) & set(theirs) and sorted(mine + theirs) == sorted(whole)
    np.testing.assert_allclose(first["sums"], single["sums"], rtol=1e-6)
    assert first["sums"] == second["sums"]


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    child_main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
