"""Labelled images as an image classifier's inputs: each image decoded (Pillow; PNG and JPEG
only), resized, center-cropped, rescaled and normalized as the model's preprocessing says, and
each class folder matched to one of the model's labels.

Preprocessing comes from a Hugging Face folder's ``preprocessor_config.json`` (``size`` as
height/width or shortest edge, ``crop_size`` with ``do_center_crop``, ConvNeXt's ``crop_pct``,
``resample``, ``rescale_factor``, ``image_mean``/``image_std``); without one, from the model's
input size (the config's ``image_size``, a graph's input spec, else 224): the image scaled to
cover it, its centre cropped, pixels scaled to [0, 1] and normalized with ImageNet's mean and
std (their averages for one channel).

A class folder names a label ignoring case, with underscores and spaces alike (``golden_retriever``
is "Golden Retriever"; any comma-separated synonym of a label counts), or its index (``3``).

>>> class_indices(["Dog", "cat_food", "0"], ("cat food", "dog"), classes=2, where="pets")
{'0': 0, 'Dog': 1, 'cat_food': 0}
"""
from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from compression.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 224
MAX_IMAGE_PIXELS = 50_000_000  # one decoded image at most (Pillow's own bomb limit is 179M)
_BILINEAR = 2  # PIL.Image.Resampling.BILINEAR, the value preprocessor configs store
_CONVNEXT_FULL_SIZE = 384  # ConvNeXt's processor crops below this shortest edge, warps from it


@dataclass(frozen=True)
class ImageProtocol:
    """How a model's images are prepared, and what its classes are called.

    An image is resized to ``resize`` exactly, or its shorter side to ``shortest_edge``, or (both
    None) just enough to cover ``size``; then center-cropped to ``size`` (height, width), multiplied
    by ``rescale`` and normalized with ``mean`` and ``std`` per channel. ``label_names[i]`` names
    class i (empty: class folders are named by index).
    """

    size: tuple[int, int]
    channels: int = 3
    resize: tuple[int, int] | None = None
    shortest_edge: int | None = None
    resample: int = _BILINEAR
    rescale: float = 1 / 255
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    label_names: tuple[str, ...] = ()

    @classmethod
    def for_input(cls, channels: int, size: tuple[int, int], label_names: Sequence[str] = ()) -> ImageProtocol:
        """The defaults for a model taking ``channels`` × height × width images."""
        mean, std = _default_statistics(channels)
        return cls(size, channels, mean=mean, std=std, label_names=tuple(label_names))

    @classmethod
    def from_preprocessor_config(
        cls, settings: Mapping, channels: int, fallback_size: tuple[int, int], label_names: Sequence[str] = ()
    ) -> ImageProtocol:
        """The protocol a ``preprocessor_config.json`` describes (its common keys); what it leaves
        out is taken from ``for_input``."""
        default = cls.for_input(channels, fallback_size, label_names)
        resize = _size(settings.get("size"))
        crop = _size(settings.get("crop_size")) if settings.get("do_center_crop", "crop_size" in settings) else None
        crop = (crop, crop) if isinstance(crop, int) else crop
        shortest_edge = None
        if isinstance(resize, int):  # the shorter side; the centre cropped to a square unless a crop is given
            shortest_edge, crop, resize = resize, crop or (resize, resize), None
            crop_pct = settings.get("crop_pct")
            if crop_pct and "crop_size" not in settings:  # ConvNeXt: scale up, crop back to the size
                if shortest_edge < _CONVNEXT_FULL_SIZE:
                    shortest_edge = int(shortest_edge / float(crop_pct))
                else:
                    shortest_edge, resize = None, crop
        rescale = float(settings.get("rescale_factor", 1 / 255)) if settings.get("do_rescale", True) else 1.0
        if settings.get("do_normalize", True):
            mean = _per_channel(settings.get("image_mean"), channels, default.mean)
            std = _per_channel(settings.get("image_std"), channels, default.std)
        else:
            mean, std = (0.0,) * channels, (1.0,) * channels
        resample = settings.get("resample")
        return cls(
            crop or resize or fallback_size, channels, resize, shortest_edge,
            resample if isinstance(resample, int) and 0 <= resample <= 5 else _BILINEAR,
            rescale, mean, std, tuple(label_names),
        )

    def pixels(self, content: bytes, where: str) -> torch.Tensor:
        """One image file's bytes as a normalized ``channels × height × width`` tensor."""
        image = _decoded(content, where, "RGB" if self.channels == 3 else "L")
        height, width = self.size
        if self.resize is not None:
            image = image.resize((self.resize[1], self.resize[0]), self.resample)
        else:
            scale = (self.shortest_edge / min(image.size) if self.shortest_edge
                     else max(height / image.height, width / image.width))
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), self.resample)
        left, top = (image.width - width) // 2, (image.height - height) // 2
        image = image.crop((left, top, left + width, top + height))  # outside the image: black
        array = np.asarray(image, dtype=np.float32).reshape(height, width, -1) * self.rescale
        values = torch.from_numpy(array).permute(2, 0, 1)
        mean, std = (torch.tensor(v, dtype=torch.float32).view(-1, 1, 1) for v in (self.mean, self.std))
        return (values - mean) / std


def class_indices(folders: Iterable[str], label_names: Sequence[str], *, classes: int, where: str) -> dict[str, int]:
    """Each class folder's class index: the label it names, else its own integer name."""
    by_name: dict[str, int] = {}
    for index, label in enumerate(label_names):
        for synonym in (label, *label.split(",")):
            by_name.setdefault(_normal(synonym), index)
    indices: dict[str, int] = {}
    for folder in sorted(folders):
        if _normal(folder) in by_name:
            indices[folder] = by_name[_normal(folder)]
        elif folder.isascii() and folder.isdecimal():
            indices[folder] = int(folder)
    unmatched = [folder for folder in sorted(folders) if folder not in indices]
    outside = [folder for folder, index in indices.items() if index >= classes]
    if unmatched and label_names:
        few = ", ".join(label_names[:5]) + (", …" if len(label_names) > 5 else "")
        raise DataError(
            f"{where}: class folder(s) {_listed(unmatched)} match none of the model's {len(label_names)} labels "
            f"({few}); name each folder after a label or its index (0–{classes - 1})."
        )
    if unmatched:
        raise DataError(
            f"{where}: class folder(s) {_listed(unmatched)} are not class indices, and the model records no "
            f"label names; name each folder by its class index (0–{classes - 1})."
        )
    if outside:
        raise DataError(
            f"{where}: class folder(s) {_listed(outside)} name indices outside the model's {classes} classes (0–{classes - 1})."
        )
    return indices


def _decoded(content: bytes, where: str, mode: str):
    """The image, decoded only if it is a PNG or JPEG of at most ``MAX_IMAGE_PIXELS`` pixels."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette transparency notes and the like
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(content), formats=("PNG", "JPEG"))
            pixels = image.width * image.height
            if pixels <= MAX_IMAGE_PIXELS:
                return image.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise DataError(f"{where} is not a readable PNG or JPEG image ({reason}).") from None
    raise DataError(f"{where} is {image.width}×{image.height} pixels; images of at most {MAX_IMAGE_PIXELS:,} pixels are read.")


def _size(value: object) -> tuple[int, int] | int | None:
    """A preprocessor size: (height, width), a shortest edge (an int), or None."""
    if isinstance(value, Mapping) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    if isinstance(value, Mapping) and "shortest_edge" in value:
        return int(value["shortest_edge"])
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    return None


def _per_channel(value: object, channels: int, default: tuple[float, ...]) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),) * channels
    if isinstance(value, (list, tuple)) and len(value) == channels:
        return tuple(float(v) for v in value)
    if isinstance(value, (list, tuple)) and value and channels == 1:
        return (sum(map(float, value)) / len(value),)
    return default


def _default_statistics(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (sum(IMAGENET_MEAN) / 3,) * channels, (sum(IMAGENET_STD) / 3,) * channels


def _normal(name: str) -> str:
    return " ".join(re.split(r"[\s_]+", name.strip().lower())).strip()


def _listed(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names[:5]) + (", …" if len(names) > 5 else "")
