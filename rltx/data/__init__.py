"""Data sources: synthetic Gaussian inputs, .npz arrays, image folders and tensorflow-datasets.

Every source returns raw examples (uint8 pixels, or float32) with their real labels; scaling to
the model's input range is `to_model_input` (A.3), random relabelling is the training code's job.
"""
from rltx.data.base import Split, Source, to_model_input
from rltx.data.files import ArraySource, ImageFolderSource, input_range_warnings
from rltx.data.gaussian import GaussianSource, parse_spectrum
from rltx.data.sources import open_source
from rltx.data.tfds_source import TfdsSource

__all__ = ["Split", "Source", "open_source", "to_model_input", "parse_spectrum",
           "GaussianSource", "ArraySource", "ImageFolderSource", "TfdsSource", "input_range_warnings"]
