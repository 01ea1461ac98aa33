"""Knowledge distillation: train a small student to match a large teacher's softened outputs.

Pruning and quantization shrink the teacher's own weights; distillation replaces them with a
smaller network that learns from the teacher. Hinton, Vinyals & Dean, "Distilling the
Knowledge in a Neural Network" (2015): at a temperature T > 1 the teacher's softmax spreads
probability over the wrong classes too (a 7 looks more like a 1 than like a 6), and that
"dark knowledge" carries more information per example than the hard label alone. The student
minimises a blend of matching the teacher and fitting the labels:

    loss = alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE(z_s, y),
    p = softmax(z / T)

The soft-target gradients scale as 1/T^2, so the T^2 keeps both terms' gradients comparable
whatever T is (section 2 of the paper). alpha = 0 is plain training on the labels: the
baseline that says what the teacher added.

>>> import torch
>>> logits = torch.tensor([[2.0, 0.5, -1.0]])
>>> float(distillation_loss(logits, logits, torch.tensor([0]), temperature=4.0, alpha=1.0))
0.0
"""
from __future__ import annotations

import copy
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from compression.compress import compress
from compression.errors import DataError, RecipeError
from compression.evaluation import evaluate, model_outputs
from compression.metrics import ACCURACY, output_tensor
from compression.model import LoadedModel, TrainingData, module_layer_types
from compression.workflows.gradual import training_data

MIN_WIDTH, MAX_WIDTH = 4, 512
# The digits are 8x8 images; inputs shown larger (simplenet's 28x28) are pooled back to this
# before the student, so its first layer does not pay for interpolated pixels.
STUDENT_SIDE = 8
_GLOBAL_RNG = threading.Lock()  # torch's global generator, seeded for a student's initial weights


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RecipeError(f"{name} must be an integer from {low} to {high}; got {value!r}.")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise RecipeError(f"{name} must be a finite number > 0; got {value!r}.")


@dataclass(frozen=True)
class DistillConfig:
    """Temperature T and weight alpha of the distillation loss, and how to train the student.

    >>> DistillConfig(alpha=1.5)
    Traceback (most recent call last):
    ...
    compression.errors.RecipeError: config.alpha must be a number between 0 and 1; got 1.5.
    """

    temperature: float = 4.0
    alpha: float = 0.7  # weight of the teacher's soft targets; 1 - alpha on the hard labels
    # 20 epochs at 1e-2 train the digits students close to convergence: with less (e.g. 10 at
    # 1e-3) the soft-target term only slows an under-trained student down, and distillation
    # loses to the labels alone (measured on mlp: 16 of 16 runs at widths 8-64).
    epochs: int = 20
    learning_rate: float = 1e-2
    batch_size: int = 32
    seed: int = 0
    width: int = 32  # the student's size (see student_for)

    def __post_init__(self) -> None:
        _check_positive("config.temperature", self.temperature)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
            raise RecipeError(f"config.alpha must be a number between 0 and 1; got {self.alpha!r}.")
        _check_int("config.epochs", self.epochs, 1, 500)
        _check_positive("config.learning_rate", self.learning_rate)
        _check_int("config.batch_size", self.batch_size, 1, 65536)
        _check_int("config.seed", self.seed, 0, 2**63 - 1)
        _check_int("config.width", self.width, MIN_WIDTH, MAX_WIDTH)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha * T² * KL(p_teacher ‖ p_student) + (1 - alpha) * CE(student, labels), batch mean.

    The KL runs from the teacher's softened distribution to the student's, as in Hinton et
    al. (it differs from their soft cross-entropy only by the teacher's entropy, a constant).
    A term whose weight is 0 is not computed, so alpha = 0 is exactly cross-entropy.
    """
    loss = student_logits.new_zeros(())
    if alpha > 0:
        log_student = F.log_softmax(student_logits / temperature, dim=1)
        log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
        soft = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
        loss = loss + alpha * temperature**2 * soft
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(student_logits, labels)
    return loss


class StudentMLP(nn.Module):
    """Two hidden ReLU layers of ``width`` and ``width // 2`` units on the flattened input.

    Image inputs larger than 8x8 are average-pooled to 8x8 first (the digits' own size).
    An MLP rather than a small CNN: at these sizes it trains in a second on a CPU, its
    parameter count is a simple function of width (in·w + w·w/2 + w/2·classes + biases), and
    the result is made of Linear layers that every compression method handles.

    >>> StudentMLP((64,), 10, width=8)(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    """

    def __init__(self, input_shape: tuple[int, ...], classes: int, width: int) -> None:
        super().__init__()
        _check_int("width", width, MIN_WIDTH, MAX_WIDTH)
        if len(input_shape) == 3 and any(side > STUDENT_SIDE for side in input_shape[1:]):
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(STUDENT_SIDE)
            features = input_shape[0] * STUDENT_SIDE * STUDENT_SIDE
        else:
            self.pool = nn.Identity()
            features = math.prod(input_shape)
        self.fc1 = nn.Linear(features, width)
        self.fc2 = nn.Linear(width, width // 2)
        self.fc3 = nn.Linear(width // 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x).flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def student_for(model: LoadedModel, width: int) -> nn.Module:
    """A fresh (untrained) ``StudentMLP`` taking ``model``'s inputs and giving its class scores.

    Seed torch first for repeatable weights. The input shape comes from
    ``model.example_inputs``, the number of classes from the model's own output on them.

    >>> from compression.io.loading import load_model
    >>> sum(p.numel() for p in student_for(load_model("mlp"), 16).parameters())
    1266
    """
    _check_int("width", width, MIN_WIDTH, MAX_WIDTH)
    inputs = model.example_inputs
    if len(inputs) != 1 or not inputs[0].is_floating_point() or inputs[0].dim() < 2:
        shapes = [tuple(t.shape) for t in inputs]
        raise DataError(
            f"a student needs one batch of float inputs to copy the shape of; {model.name!r} "
            f"has example inputs of shapes {shapes}. Distillation covers classifiers of one tensor."
        )
    with torch.inference_mode():
        outputs = output_tensor(model.module(*inputs))
    if outputs.dim() != 2:
        raise DataError(
            f"a student learns class scores of shape (batch, classes); {model.name!r} gives "
            f"outputs of shape {tuple(outputs.shape)}."
        )
    return StudentMLP(tuple(inputs[0].shape[1:]), int(outputs.shape[1]), width)


@dataclass(frozen=True)
class EpochRecord:
    """One training epoch: its number (from 1), mean training loss, held-out accuracy."""

    epoch: int
    loss: float
    value: float


@dataclass(frozen=True)
class DistillResult:
    """The trained student as a model of its own, with its record and its size beside the teacher's."""

    model: LoadedModel  # the teacher's data and inputs, the student's module and layers
    config: DistillConfig
    epochs: list[EpochRecord] = field(default_factory=list)
    parameters: int = 0  # the student's
    teacher_parameters: int = 0
    file_bytes: int = 0  # the student's packed size uncompressed: compress(model, {}).report.file_bytes

    @property
    def module(self) -> nn.Module:
        return self.model.module

    @property
    def value(self) -> float:
        """Held-out accuracy after the last epoch."""
        return self.epochs[-1].value


Progress = Callable[[int, int, EpochRecord], None]


def distill(
    teacher: LoadedModel,
    config: DistillConfig,
    *,
    data: TrainingData | None = None,
    progress: Progress | None = None,
) -> DistillResult:
    """Train a ``student_for(teacher, config.width)`` on ``teacher``'s soft targets and the labels.

    Adam on ``distillation_loss`` over ``data`` (default: the teacher's training split), the
    teacher's logits computed once in inference mode; the teacher is not changed. Seeded:
    the same arguments give the same student, and the caller's global RNG is left as it was.
    After each epoch, ``progress(epoch, config.epochs, record)`` with held-out accuracy.
    """
    if teacher.evaluation is None or teacher.evaluation.metric != ACCURACY:
        raise DataError(f"distillation scores the student by held-out accuracy; {teacher.name!r} has no labelled evaluation data.")
    data = data if data is not None else training_data(teacher)
    teacher_logits = model_outputs(_frozen(teacher), (data.inputs,), teacher.evaluation.batch_size)
    # The student's initial weights come from torch's global generator: seeded, restored, and
    # held by one run at a time, so concurrent sessions cannot interleave their draws.
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        student = student_for(teacher, config.width)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
    record = []
    for epoch in range(1, config.epochs + 1):
        student.train()
        total, batches = 0.0, 0
        for batch in torch.randperm(len(data.labels), generator=generator).split(config.batch_size):
            optimizer.zero_grad()
            loss = distillation_loss(
                student(data.inputs[batch]), teacher_logits[batch], data.labels[batch],
                temperature=config.temperature, alpha=config.alpha,
            )
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        entry = EpochRecord(epoch, total / batches, evaluate(teacher, student.eval()).value)
        record.append(entry)
        if progress is not None:
            progress(epoch, config.epochs, entry)
    for weight in student.parameters():
        weight.requires_grad_(False)
    how = f"distilled from {teacher.name} (T={config.temperature}, alpha={config.alpha})" if config.alpha > 0 else "trained on the labels alone"
    model = replace(
        teacher,
        name=f"{teacher.name}-{'distilled' if config.alpha > 0 else 'trained'}-w{config.width}",
        format="module",
        module=student,
        layer_types=module_layer_types(student),
        description=f"student MLP of width {config.width} {how}, {config.epochs} epochs",
        cache={},
    )
    return DistillResult(
        model=model,
        config=config,
        epochs=record,
        parameters=_count(student),
        teacher_parameters=_count(teacher.module),
        file_bytes=compress(model, {}).report.file_bytes,
    )


def compare_distillation(
    teacher: LoadedModel,
    config: DistillConfig,
    *,
    data: TrainingData | None = None,
    progress: Progress | None = None,
) -> tuple[DistillResult, DistillResult]:
    """The same student (same seed, width, schedule) with ``config.alpha`` and with alpha = 0.

    The pair isolates what the teacher's soft targets add over the labels alone. ``progress``
    counts both runs: epochs 1..n of the distilled one, then n+1..2n of the plain one.
    """
    total = 2 * config.epochs

    def shifted(offset: int) -> Progress | None:
        if progress is None:
            return None
        return lambda done, _, record: progress(offset + done, total, record)

    with_teacher = distill(teacher, config, data=data, progress=shifted(0))
    without = distill(teacher, replace(config, alpha=0.0), data=data, progress=shifted(config.epochs))
    return with_teacher, without


@dataclass(frozen=True)
class SoftTargets:
    """One held-out example as the teacher sees it: its logits z and softmax(z / T) at T = 1
    and at ``temperature``, the distribution the student is taught to match."""

    index: int
    label: int | None
    inputs: torch.Tensor  # the example's row of the evaluation inputs (no batch dimension)
    logits: tuple[float, ...]
    at_one: tuple[float, ...]
    at_temperature: tuple[float, ...]
    temperature: float

    def image(self) -> torch.Tensor | None:
        """The input as a picture scaled to [0, 1]: its first channel, or a flat row of a
        square's length (the digits' 64 pixels) as that square; None for other shapes."""
        pixels = self.inputs[0] if self.inputs.dim() == 3 else self.inputs
        side = math.isqrt(pixels.numel())
        if pixels.dim() == 1 and side * side == pixels.numel():
            pixels = pixels.reshape(side, side)
        if pixels.dim() != 2:
            return None
        low, high = pixels.min(), pixels.max()
        return (pixels - low) / (high - low) if high > low else torch.zeros_like(pixels)


def soft_targets(teacher: LoadedModel, index: int, temperature: float) -> SoftTargets:
    """The teacher's softened output for held-out example ``index``: softmax(z_i / T) =
    exp(z_i / T) / Σ_j exp(z_j / T) at T = 1 and at ``temperature``. Raising T lifts the
    wrong classes' probabilities, Hinton et al.'s "dark knowledge" (which other digits this
    one resembles), that the hard label does not carry.

    >>> from compression.io.loading import load_model
    >>> targets = soft_targets(load_model("mlp"), 0, 4.0)
    >>> max(targets.at_temperature) < max(targets.at_one), round(sum(targets.at_temperature), 6)
    (True, 1.0)
    """
    _check_positive("temperature", temperature)
    if teacher.evaluation is None:
        raise DataError(f"{teacher.name!r} has no held-out examples to show the soft targets of; load it with data.")
    size = teacher.evaluation.size
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise RecipeError(f"index must be an integer from 0 to {size - 1} (a held-out example); got {index!r}.")
    row = tuple(tensor[index : index + 1] for tensor in teacher.evaluation.inputs)
    logits = model_outputs(_frozen(teacher), row, teacher.evaluation.batch_size)[0]
    if logits.dim() != 1:
        raise DataError(f"soft targets are class scores; {teacher.name!r} gives outputs of shape {tuple(logits.shape)} per example.")
    labels = teacher.evaluation.labels
    return SoftTargets(
        index=index,
        label=None if labels is None else int(labels[index]),
        inputs=row[0][0],
        logits=tuple(logits.tolist()),
        at_one=tuple(F.softmax(logits, dim=0).tolist()),
        at_temperature=tuple(F.softmax(logits / temperature, dim=0).tolist()),
        temperature=float(temperature),
    )


def _frozen(teacher: LoadedModel) -> nn.Module:
    """The teacher's module to predict with: a module left in training mode would update its
    BatchNorm statistics as it predicts, so such a one is copied into eval mode."""
    return copy.deepcopy(teacher.module).eval() if teacher.module.training else teacher.module


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
