"""The error X-ray (compression.workflows.xray): each layer's local and accumulated output error
under a recipe, its channels' outliers, and what-ifs that change one layer."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import compression
from compression.io.loading import load_model
from compression.layer_calls import layer_owners, record
from compression.metrics import OUTPUT_COSINE
from compression.model import EvaluationData, LoadedModel, module_layer_types, weights_fingerprint
from compression.output_error import OutputError
from compression.workflows.sensitivity import single_layer_recipe
from compression.workflows.xray import KEEP_FLOAT, LESS_PRUNING, MORE_BITS, layer_detail, what_if, xray

PRUNE = {"method": "magnitude", "amount": 0.5}
QUANTIZE = {"scheme": "linear", "bits": 4, "granularity": "per_channel"}
RECIPE = {"prune": PRUNE, "quantize": QUANTIZE}
SAMPLES = 64


@pytest.fixture(scope="module")
def mlp() -> LoadedModel:
    return load_model("mlp")


@pytest.fixture(scope="module")
def scan(mlp):
    return xray(mlp, RECIPE, samples=SAMPLES)


def layer_output_error(model: LoadedModel, module: nn.Module, layer: str, rows: int) -> OutputError:
    """``layer``'s output in ``module`` against the original model's, on the first ``rows`` rows."""
    outputs = []
    for candidate in (model.module, module):
        owner = dict(candidate.named_modules())[layer.rpartition(".")[0]]
        seen = []
        handle = owner.register_forward_hook(lambda _, __, output: seen.append(output.detach().clone()))
        with torch.no_grad():
            candidate(*(tensor[:rows] for tensor in model.evaluation.inputs))
        handle.remove()
        outputs.append(torch.cat(seen))
    error = OutputError()
    error.add(*outputs)
    return error


def small_model(module: nn.Module, rows: int = 16) -> LoadedModel:
    inputs = (torch.randn(rows, 8, generator=torch.Generator().manual_seed(0)),)
    return LoadedModel(name="small", format="module", module=module.eval(), layer_types=module_layer_types(module),
                       example_inputs=inputs, evaluation=EvaluationData(inputs, None, OUTPUT_COSINE, "random rows"))


def test_rows_follow_the_order_the_layers_run_not_the_order_they_are_defined():
    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.last = nn.Linear(8, 2)
            self.first = nn.Linear(8, 8)

        def forward(self, x):
            return self.last(self.first(x).relu())

    scan = xray(small_model(Backwards()), {"quantize": QUANTIZE})
    assert [(row.order, row.name) for row in scan.rows] == [(0, "first.weight"), (1, "last.weight")]


def test_local_error_of_a_layer_equals_what_compressing_only_that_layer_gives(mlp, scan):
    alone = compression.compress(mlp, single_layer_recipe(mlp, "fc2.weight", prune=PRUNE, quantize=QUANTIZE))
    expected = layer_output_error(mlp, alone.module, "fc2.weight", SAMPLES)
    row = scan.layer("fc2.weight")
    assert row.local_sqnr_db == pytest.approx(expected.sqnr_db, rel=1e-6)
    assert row.local_cosine == pytest.approx(expected.cosine, rel=1e-6)
    assert math.isfinite(row.local_sqnr_db) and row.compressed


def test_accumulated_error_at_the_last_layer_is_the_model_outputs_error(mlp, scan):
    # fc3 gives mlp's output: the accumulated error there is the compressed model's output error.
    compressed = compression.compress(mlp, RECIPE)
    expected = layer_output_error(mlp, compressed.module, "fc3.weight", SAMPLES)
    last = scan.rows[-1]
    assert last.name == "fc3.weight"
    assert last.accumulated_sqnr_db == pytest.approx(expected.sqnr_db, rel=1e-6) == pytest.approx(scan.output_sqnr_db)
    assert last.accumulated_cosine == pytest.approx(scan.output_cosine, rel=1e-9)


def test_the_first_layer_has_the_same_local_and_accumulated_error(scan):
    first = scan.rows[0]
    assert first.local_sqnr_db == pytest.approx(first.accumulated_sqnr_db, rel=1e-9)


def test_a_layer_the_recipe_leaves_alone_is_lossless_and_flagged(mlp):
    scan = xray(mlp, {**RECIPE, "overrides": {"fc2.weight": {"prune": None, "quantize": None}}}, samples=SAMPLES)
    row = scan.layer("fc2.weight")
    assert row.local_sqnr_db == math.inf and row.local_cosine == 1.0 and not row.compressed
    assert math.isfinite(row.accumulated_sqnr_db)  # fc1's error reaches it
    assert scan.frame().set_index("name").loc["fc2.weight", "compressed"] == False  # noqa: E712 - a numpy bool


def test_an_output_that_overflows_is_minus_infinity_not_lossless():
    model = small_model(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)))
    with torch.no_grad():
        model.module[0].weight.mul_(1e6)  # beyond fp16's largest value, 65504: a cast to inf
    scan = xray(model, {"quantize": {"scheme": "float", "format": "fp16"}})
    assert scan.layer("0.weight").local_sqnr_db == -math.inf
    assert math.isnan(scan.layer("0.weight").local_cosine)


def test_keep_float_makes_the_layers_local_error_lossless(scan):
    changed = what_if(scan, "fc2.weight", KEEP_FLOAT)
    row = changed.layer("fc2.weight")
    assert row.local_sqnr_db == math.inf and not row.compressed
    assert row.accumulated_sqnr_db > scan.layer("fc2.weight").accumulated_sqnr_db
    assert changed.layer("fc1.weight") == scan.layer("fc1.weight")  # before it, nothing moved
    assert changed.changes[0].override == {"prune": None, "quantize": None}


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_two_more_bits_give_the_weight_compress_gives_with_that_override(mlp, scope):
    recipe = {"prune": {**PRUNE, "scope": scope}, "quantize": QUANTIZE}
    changed = what_if(xray(mlp, recipe, samples=8), "fc2.weight", MORE_BITS)
    assert changed.changes[0].override == {"quantize": {"bits": 6}}
    overridden = compression.compress(mlp, {**recipe, "overrides": {"fc2.weight": {"quantize": {"bits": 6}}}})
    assert torch.equal(changed.weights["fc2.weight"], overridden.module.fc2.weight)  # the global cut kept


def test_pruning_half_as_much_halves_the_layers_amount(mlp):
    changed = what_if(xray(mlp, RECIPE, samples=8), "fc2.weight", LESS_PRUNING)
    override = changed.changes[0].override
    assert override == {"prune": {"method": "magnitude", "amount": 0.25, "scope": "layer"}}
    overridden = compression.compress(mlp, {**RECIPE, "overrides": {"fc2.weight": override}})
    assert torch.equal(changed.weights["fc2.weight"], overridden.module.fc2.weight)


def test_under_a_global_cut_pruning_half_as_much_halves_what_the_cut_took_from_that_layer(mlp):
    recipe = {"prune": {**PRUNE, "scope": "global"}}
    scan = xray(mlp, recipe, samples=8)
    taken = float((compression.compress(mlp, recipe).module.fc3.weight == 0).float().mean())
    amount = what_if(scan, "fc3.weight", LESS_PRUNING).changes[0].override["prune"]["amount"]
    assert amount == pytest.approx(taken / 2)


def test_what_ifs_that_do_not_apply_say_why(scan, mlp):
    with pytest.raises(compression.RecipeError, match="not pruned"):
        what_if(xray(mlp, {"quantize": QUANTIZE}, samples=8), "fc2.weight", LESS_PRUNING)
    with pytest.raises(compression.RecipeError, match="fixed width"):
        what_if(xray(mlp, {"quantize": {"scheme": "float", "format": "fp16"}}, samples=8), "fc2.weight", MORE_BITS)
    with pytest.raises(compression.RecipeError, match="change must be one of"):
        what_if(scan, "fc2.weight", "fewer_bits")


def test_layer_detail_gives_per_channel_input_maxima_and_weight_ranges(mlp, scan):
    detail = layer_detail(scan, "fc1.weight")
    inputs = mlp.evaluation.inputs[0][:SAMPLES].double()
    assert detail.input_maxima == pytest.approx(inputs.abs().amax(dim=0).numpy())
    assert detail.input_maxima.shape == detail.input_kurtosis.shape == (64,)
    weight = mlp.module.fc1.weight.detach()
    assert detail.weight.low == pytest.approx(weight.amin(dim=1).numpy())
    assert detail.weight.magnitude == pytest.approx(weight.abs().amax(dim=1).numpy())


def test_a_layer_reading_the_same_input_as_another_shares_its_recorded_copy():
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query, self.key = nn.Linear(8, 4), nn.Linear(8, 4)

        def forward(self, x):
            return self.query(x) * self.key(x)

    module = Attention().eval()
    recording = record(module, (torch.randn(3, 8),), 3, {}, layer_owners(module, module_layer_types(module)))
    assert recording.calls["query"][0].args[0] is recording.calls["key"][0].args[0]


def test_a_tied_lm_head_is_measured_where_the_head_runs():
    scan = xray(load_model("tinylm"), RECIPE, samples=2)
    head = scan.layer("model.embed_tokens.weight")
    assert head.module == "lm_head" and head.order == len(scan.rows) - 1
    assert head.accumulated_sqnr_db == pytest.approx(scan.output_sqnr_db)


def test_a_torchscript_model_is_refused_in_one_line():
    model = small_model(nn.Sequential(nn.Linear(8, 2)))
    scripted = LoadedModel(name="scripted.pt", format="torchscript", module=torch.jit.script(model.module),
                           layer_types=model.layer_types, example_inputs=model.example_inputs, evaluation=model.evaluation)
    with pytest.raises(compression.CompressionError, match=r"^scripted\.pt is a TorchScript module: .*hooks"):
        xray(scripted, RECIPE)


def test_the_budget_picks_the_rows_and_says_which(mlp):
    scan = xray(mlp, RECIPE)
    assert scan.samples == mlp.evaluation.size  # mlp's activations are small: every row
    assert xray(mlp, RECIPE, samples=10).data.startswith("the first 10 of")


def test_the_model_is_not_changed(mlp):
    before = weights_fingerprint(mlp.module)
    what_if(xray(mlp, RECIPE, samples=8), "fc1.weight", MORE_BITS)
    assert weights_fingerprint(mlp.module) == before
