"""The numpy fast paths give what the torch expressions they replace give, on every dtype and on
NaN, ±inf and -0.0; the memo of a model's original weights is used again and measured anew when
a weight changes in place.
"""
from __future__ import annotations

import math

import pytest
import torch

import compression
from compression import masks_numpy
from compression.original_weights import MEMO_KEY
from compression.stats import histogram, value_range

SPECIAL = [0.0, -0.0, 1.5, -1.5, 0.25, -3.0, math.inf, -math.inf, math.nan, 1e-30, -2.0]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def values(dtype: torch.dtype, finite: bool = False) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    special = [v for v in SPECIAL if math.isfinite(v)] if finite else SPECIAL
    return torch.cat([torch.tensor(special), torch.randn(600 - len(special), generator=generator)]).to(dtype).reshape(3, -1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_comparisons_and_selections_equal_torchs(dtype: torch.dtype):
    tensor = values(dtype)
    for bound in (-math.inf, -1.5, 0.0, 0.25, 1.5, math.inf):
        assert torch.equal(masks_numpy.at_least(tensor, bound), tensor >= bound)
        assert masks_numpy.count_below(tensor, bound) == int((tensor < bound).sum())
        assert masks_numpy.count_above(tensor, bound) == int((tensor > bound).sum())
    flat = tensor.reshape(-1)
    assert torch.equal(masks_numpy.within(tensor, -1.5, 0.25), flat[(flat >= -1.5) & (flat <= 0.25)])
    assert (masks_numpy.nonzero_flags(tensor) == (tensor != 0).numpy()).all()
    assert torch.equal(masks_numpy.zero_flags(tensor), tensor == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("finite", [True, False])
def test_zeroing_outside_the_mask_equals_where_with_one_positive_zero(dtype: torch.dtype, finite: bool):
    weight = values(dtype, finite)
    keep = torch.rand(weight.shape, generator=torch.Generator().manual_seed(1)) > 0.5
    got = masks_numpy.zeroed_outside(weight, keep)
    expected = torch.where(keep, weight, torch.zeros((), dtype=dtype)).float()
    assert got.dtype == torch.float32
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.nan_to_num(), expected.nan_to_num())
    assert not torch.signbit(got[~keep]).any()  # every pruned weight is +0.0


def test_strided_masks_and_tensors_work_as_their_contiguous_copies():
    weight = torch.randn(8, 6).t()  # not contiguous
    keep = torch.tensor([True, False, True, True, False, True])[:, None].expand(6, 8)  # stride 0
    assert torch.equal(masks_numpy.zeroed_outside(weight, keep), torch.where(keep, weight, 0.0))
    assert torch.equal(masks_numpy.at_least(weight.abs(), 0.5), weight.abs() >= 0.5)


def test_the_histogram_of_values_beyond_the_limit_counts_them_outside():
    tensor = torch.tensor([-5.0, -1.0, 0.0, 1.0, 1.0, 5.0, math.inf])
    counts = histogram(tensor, 1.0, bins=3, extremes=value_range(tensor))
    assert counts.outside == 2 and counts.counts.tolist() == [2, 1, 3]


def test_the_original_weights_are_measured_once_per_model_and_again_after_an_in_place_change():
    model = compression.load_model("mlp")
    recipe = {"prune": {"amount": 0.5}}
    first = compression.compress(model, recipe).report
    memo = model.cache[MEMO_KEY]
    assert compression.compress(model, recipe).report.layers[0].histogram_before.counts.tolist() == \
        first.layers[0].histogram_before.counts.tolist()
    assert model.cache[MEMO_KEY] is memo
    name = first.layers[0].name
    with torch.no_grad():
        model.module.get_parameter(name).mul_(2.0)  # a user's in-place change: the memo must not hide it
    changed = compression.compress(model, recipe).report
    fresh = compression.compress(compression.load_model("mlp").with_module(model.module, "doubled"), recipe).report
    assert changed.layer(name).histogram_before.counts.tolist() == fresh.layer(name).histogram_before.counts.tolist()
    assert changed.layer(name).sqnr_db == pytest.approx(fresh.layer(name).sqnr_db)
    assert changed.histogram_before.counts.tolist() == fresh.histogram_before.counts.tolist()
