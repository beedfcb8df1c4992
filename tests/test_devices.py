"""Device set-up of a run (GPU memory growth or cap, XLA) and how sweep workers share GPUs.

No GPU on the test machine: GPUs are faked where the code only decides settings, and the real
set-up code runs on the CPU, where it must leave everything as it is."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import tensorflow as tf
from tests_support import tiny_recipe_dict

from rltx import cluster, distribute, store
from rltx.config import make_recipe
from rltx.errors import UsageError
from rltx.sweep import execute, ray_executor
from rltx.sweep.plan import Plan, PlannedRun
from rltx.pretrain import pretrain


def test_worker_env_packs_k_runs_per_gpu():
    env = [execute.worker_env(slot, ["3", "5"], 2, 80_000) for slot in range(5)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in env] == ["3", "3", "5", "5", "3"]
    assert {e[cluster.MEMORY_ENV] for e in env} == {str(40_000 - execute.CONTEXT_MB)}
    # one run per GPU, or a GPU of unknown size: no cap, only memory growth
    assert execute.worker_env(1, ["3", "5"], 1, 80_000) == {"CUDA_VISIBLE_DEVICES": "5"}
    assert execute.worker_env(1, ["3", "5"], 4, None) == {"CUDA_VISIBLE_DEVICES": "3"}
    assert execute.worker_env(0, [], 4, 80_000) == {}


def test_run_local_starts_each_worker_with_its_gpu_and_cap(tmp_path, monkeypatch):
    """Four runs at once, --runs-per-gpu 2 on two (fake) 16 GB GPUs: two runs per GPU, 7.5 GB each."""
    started = []

    def fake_start(run, log, env):
        started.append((run.name, env))
        return subprocess.Popen([sys.executable, "-c", "pass"]), 0.0, log

    monkeypatch.setattr(execute, "visible_gpus", lambda: ["0", "1"])
    monkeypatch.setattr(execute, "gpu_memory_mb", lambda: 16_000)
    monkeypatch.setattr(execute, "start", fake_start)
    runs = tuple(PlannedRun(f"r{i}", "pretrain", (), (str(tmp_path / f"r{i}"),), (), 0) for i in range(4))
    messages = []
    outcomes = execute.run_local(Plan("recipe", str(tmp_path), (), runs), workers=4, runs_per_gpu=2,
                                 echo=messages.append)
    assert [o.status for o in outcomes] == ["failed"] * 4  # nothing was trained: no run directory completed
    cap = str(8_000 - execute.CONTEXT_MB)
    assert started == [(f"r{i}", {"CUDA_VISIBLE_DEVICES": gpu, cluster.MEMORY_ENV: cap})
                       for i, gpu in enumerate("0011")]
    assert messages[0] == f"4 workers on 2 GPUs, 2 per GPU, {cap} MiB each"


def test_default_workers_are_k_per_gpu(monkeypatch):
    from rltx.sweep import command
    monkeypatch.setattr(execute, "visible_gpus", lambda: ["0", "1", "2"])
    assert command._default_workers(4) == 12
    monkeypatch.setattr(execute, "visible_gpus", lambda: [])
    assert command._default_workers(2) == 2


def test_ray_task_env_for_fractional_gpus():
    def size():
        return 40_000
    assert ray_executor.task_env(0, size) == {"CUDA_VISIBLE_DEVICES": ""}  # asked for none: sees none
    assert ray_executor.task_env(1, size) == {}  # Ray sets CUDA_VISIBLE_DEVICES
    assert ray_executor.task_env(0.25, size) == {cluster.MEMORY_ENV: str(10_000 - execute.CONTEXT_MB)}
    assert ray_executor.task_env(0.25, lambda: None) == {}  # unknown size: memory growth only


@pytest.fixture
def fake_gpu(monkeypatch):
    """tf.config sees one GPU; the calls that would configure it are recorded."""
    calls = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda gpu, on: calls.append(("growth", gpu, on)))
    monkeypatch.setattr(tf.config, "set_logical_device_configuration",
                        lambda gpu, configs: calls.append(("limit", gpu, [c.memory_limit for c in configs])))
    return calls


def test_configure_gpus_grows_memory_or_caps_it(fake_gpu, monkeypatch):
    monkeypatch.delenv(cluster.MEMORY_ENV, raising=False)
    distribute.configure_gpus()
    monkeypatch.setenv(cluster.MEMORY_ENV, "7488")
    distribute.configure_gpus()
    assert fake_gpu == [("growth", "GPU:0", True), ("limit", "GPU:0", [7488])]
    monkeypatch.setenv(cluster.MEMORY_ENV, "8GB")
    with pytest.raises(UsageError, match="RLTX_GPU_MEMORY_MB='8GB' is not a positive number of MiB"):
        distribute.configure_gpus()


DEVICE_SETUP = """
import tensorflow as tf
from rltx.distribute import choose_strategy
strategy = choose_strategy()
gpus = tf.config.list_physical_devices("GPU")
print([tf.config.experimental.get_memory_growth(g) for g in gpus], type(strategy).__name__)
"""


@pytest.mark.slow
def test_device_setup_runs_on_a_machine_without_gpu():
    """The real set-up, in a fresh process (TF configures devices once): every GPU grows its memory;
    on a CPU-only machine there is nothing to set and it must just work."""
    environ = {k: v for k, v in os.environ.items() if k != cluster.MEMORY_ENV}
    result = subprocess.run([sys.executable, "-c", DEVICE_SETUP], capture_output=True, text=True, timeout=120,
                            env=environ)
    assert result.returncode == 0, result.stderr
    gpus = len(tf.config.list_physical_devices("GPU"))
    strategy = "MirroredStrategy" if gpus > 1 else "OneDeviceStrategy"
    assert result.stdout.split("\n")[-2] == f"{[True] * gpus} {strategy}"


def _strategy_on(*devices):
    return types.SimpleNamespace(extended=types.SimpleNamespace(worker_devices=devices))


def test_jit_compile_auto_is_on_for_gpus_only():
    gpu, cpu = "/job:localhost/replica:0/task:0/device:GPU:0", "/job:localhost/replica:0/task:0/device:CPU:0"
    assert distribute.use_xla("auto", _strategy_on(gpu, gpu.replace("GPU:0", "GPU:1")))
    assert not distribute.use_xla("auto", _strategy_on(cpu))
    assert distribute.use_xla(True, _strategy_on(cpu)) and not distribute.use_xla(False, _strategy_on(gpu))
    # XLA on split logical CPU devices fails inside TF (a replica's variable on another device)
    with pytest.raises(UsageError, match="^jit_compile: true does not work with MirroredStrategy over 2 CPU"):
        distribute.use_xla(True, _strategy_on(cpu, cpu.replace("CPU:0", "CPU:1")))
    with pytest.raises(UsageError, match="jit_compile is 'yes'; use auto, true or false"):
        make_recipe({**tiny_recipe_dict(), "jit_compile": "yes"})


def test_compiled_and_uncompiled_steps_give_the_same_losses(tmp_path):
    """The same run with XLA on and off, on this machine's device (one device: XLA cannot compile
    over split logical CPUs). XLA fuses the ops and may sum in another order, so values differ by
    float32 rounding (eps 1.2e-7), which 40 SGD steps carry along: measured at most 7e-8 relative on
    the CPU. rel 1e-5 leaves 100x margin, while a step computed wrongly (a missed update, another
    scaling of the loss) moves these losses by 1e-3 or more."""
    rows = {}
    for jit in (False, True):
        # metrics compared at the checkpoints 0, 10, ... 40
        recipe = {**tiny_recipe_dict(), "jit_compile": jit, "num_eval_points": 2}
        pretrain(make_recipe(recipe), tmp_path / str(jit), resume=False)
        rows[jit] = store.read_metrics(Path(tmp_path / str(jit)))
    assert [r["step"] for r in rows[True]] == [r["step"] for r in rows[False]]
    for plain, compiled in zip(rows[False], rows[True]):
        for name in ("train_loss", "test_loss", "weight_norm/conv_0", "weight_norm/head"):
            assert compiled[name] == pytest.approx(plain[name], rel=1e-5), (plain["step"], name)
        assert abs(compiled["train_accuracy"] - plain["train_accuracy"]) <= 1 / 384
    assert rows[False][-1]["train_loss"] < rows[False][0]["train_loss"] - 0.5  # it learned: the check means something


@pytest.mark.parametrize("config", [
    {"cluster": {"chief": ["head-node.local:2222"], "worker": ["w-1:2222", "w-2:2222"]},
     "task": {"type": "chief", "index": 0}},
    {"cluster": {"worker": ["[::1]:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 1}},
    {"cluster": {"worker": ["localhost:2222"]}, "task": {"type": "worker"}},  # index 0 by default
    {"cluster": {"worker": ["localhost:2222"]}, "task": {"type": "evaluator", "index": 0}},  # outside the cluster
    {},
])
def test_tf_config_of_tf_s_valid_forms_is_accepted(monkeypatch, config):
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert cluster.tf_config() == config


@pytest.mark.parametrize("config", [
    {"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief", "index": 0}},  # TF allows one chief
    {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}},
    {"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}},
    {"cluster": {"worker": ["a b:1"]}, "task": {"type": "worker", "index": 0}},
    {"cluster": {"gpu": ["a:1"]}, "task": {"type": "gpu", "index": 0}},
])
def test_tf_config_outside_tf_s_rules_is_refused(monkeypatch, config):
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    with pytest.raises(UsageError, match="TF_CONFIG is not valid"):
        cluster.tf_config()
