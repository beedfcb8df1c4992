"""Training-time estimates of a sweep plan from measured throughput (rltx.throughput)."""
import json

from rltx.recipe_file import read_recipe_file
from rltx.sweep import expand
from rltx.throughput import read_measurements, summary_lines

SWEEP = """
dataset: cifar10
num_examples_upstream: 25600
num_examples_downstream: 2560
architecture: simple_cnn
learning_rate: 0.01
batch_size: 256
epochs: 2
sweep:
  architectures: [simple_cnn, vgg16]
  groups: 2
  seeds: 1
  transfer_layers: [all]
  labels_downstream: [real, random]
"""


def test_hours_are_steps_times_batch_over_the_measured_rate(tmp_path):
    """Per group: a pre-training of 2 epochs of 25600 / 256 = 200 steps, and 2 transfer commands
    of 2 runs of 2 epochs of 2560 / 256 = 20 steps: 280 steps; 2 groups: 560 per architecture."""
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(SWEEP)
    plan = expand(read_recipe_file(recipe), tmp_path / "out")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "gpu.json").write_text(json.dumps(
        {"device": "Some GPU", "date": "2030-01-01", "source": "test", "batch_size": 256, "image_size": 32,
         "train_images_per_second": {"simple_cnn": 256 * 560 / 3600}}))  # 560 steps in one hour
    (tmp_path / "m" / "small.json").write_text(json.dumps(
        {"device": "Other", "date": "2030-01-02", "source": "test", "batch_size": 8, "image_size": 32,
         "train_images_per_second": {"simple_cnn": 1000, "vgg16": 100}}))
    lines = summary_lines(plan, read_measurements(tmp_path / "m"))
    assert lines[0] == "training steps (pre-training, and both runs of each transfer): simple_cnn 560, vgg16 560"
    assert lines[1].startswith("estimated training time on Some GPU (measured 2030-01-01, batch 256, 32x32,")
    assert lines[1].endswith("simple_cnn 1.0 h, vgg16 not measured; 1.0 h in all, one run at a time")
    assert lines[2].endswith("simple_cnn not estimated (other batch size or image side), "
                             "vgg16 not estimated (other batch size or image side)")


def test_shipped_measurements_name_device_and_date():
    measurements = read_measurements()
    assert measurements and all(m.device and m.date and m.rates for m in measurements)
