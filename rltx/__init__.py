"""rltx: transfer learning from random labels (Maennel et al., NeurIPS 2020).

The only import-time side effect: oneDNN kernels are switched on unless the user
chose otherwise, because TensorFlow reads the variable once, when it is imported
(measured 2-3.4x faster training on the project's AMD CPUs).
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.2.0"


def load_model(run_dir, step=None):
    """The Keras model of the stored run in `run_dir` with the weights of its checkpoint at `step`
    (default: the last stored); see `rltx.runs.load_model`. TensorFlow is imported on the first
    call, not by `import rltx`."""
    from rltx.runs import load_model as load
    return load(run_dir, step)
