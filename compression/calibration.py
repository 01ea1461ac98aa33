"""The calibration rows a recipe asks for: drawn from the model's calibration data, fingerprinted.

Where each model's calibration data comes from (its training split, the bundled calibration
corpus, a quarter of a user's .npz) is the io layer's business (``compression.io.calibration_sources``);
here the recipe's ``calibration`` section picks rows from it. The draw is
``torch.randperm(available, generator seeded with seed)[:samples]``, put back in source order:
the same seed gives the same rows on every machine, another seed other rows, and asking for
more rows than the source holds gives every row it has (then the seed changes nothing).

>>> from compression.model import CalibrationData
>>> data = CalibrationData(lambda: (torch.arange(10).reshape(10, 1),), "ten rows")
>>> draw(data, CalibrationSpec(samples=3, seed=0))[0].flatten().tolist()
[1, 4, 7]
>>> draw(data, CalibrationSpec(samples=50))[0].shape
torch.Size([10, 1])
"""
from __future__ import annotations

import hashlib

import torch

from compression.errors import DataError
from compression.model import CalibrationData, LoadedModel
from compression.recipe import CalibrationSpec


def calibration_inputs(model: LoadedModel, spec: CalibrationSpec) -> tuple[torch.Tensor, ...]:
    """``spec.samples`` rows of ``model``'s calibration data (all of them where it holds fewer),
    drawn with ``spec.seed``: the model's positional inputs, rows first."""
    if model.calibration is None:
        raise DataError(
            f"{model.name} has no calibration data (its evaluation inputs are {_what(model)}); give data with "
            "--data x.npz (load_model(source, data=...)): a quarter of its rows calibrate, the rest are evaluated."
        )
    return draw(model.calibration, spec)


def draw(data: CalibrationData, spec: CalibrationSpec) -> tuple[torch.Tensor, ...]:
    """``spec.samples`` of ``data``'s rows chosen with ``spec.seed``, in source order."""
    available = data.size
    if spec.samples >= available:
        return data.inputs
    generator = torch.Generator().manual_seed(spec.seed)
    rows = torch.randperm(available, generator=generator)[: spec.samples].sort().values
    return tuple(tensor[rows] for tensor in data.inputs)


def calibration_fingerprint(inputs: tuple[torch.Tensor, ...]) -> str:
    """The first 16 hex digits of the SHA-256 of the rows: each tensor's dtype, shape and
    bytes. Equal fingerprints mean the same rows, bit for bit, in the same order.

    >>> calibration_fingerprint((torch.zeros(2, 3),)) == calibration_fingerprint((torch.zeros(2, 3),))
    True
    >>> calibration_fingerprint((torch.zeros(2, 3),)) == calibration_fingerprint((torch.zeros(3, 2),))
    False
    """
    digest = hashlib.sha256()
    for tensor in inputs:
        values = tensor.detach().cpu().contiguous()
        header = f"{values.dtype}\0{tuple(values.shape)}\n".encode()
        digest.update(len(header).to_bytes(8, "little") + header)
        if values.numel():
            digest.update(memoryview(values.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()[:16]


def _what(model: LoadedModel) -> str:
    return model.evaluation.description if model.evaluation is not None else "not known"
