"""Latency tables, the standard variants and the verdicts: their structure and wording.

Timings themselves are measured by bench/latency.py, not asserted: the verdicts are checked on
tables written here.
"""
from __future__ import annotations

import time

import pandas as pd
import pytest
import torch
from torch import nn

from compression.errors import DataError
from compression.workflows.latency import (
    ORT_FP32,
    ORT_INT8_DYNAMIC,
    ORT_INT8_STATIC,
    RECIPE_LABEL,
    TORCH_FP32,
    CpuInfo,
    Technique,
    batch_of,
    int8_slowness,
    latency_table,
    median_milliseconds_in_turns,
    parse_cpuinfo,
    standard_variants,
    torch_threads,
    variant_scores,
    verdicts,
)
from compression.io.loading import load_model
from compression.model import LoadedModel

SPARSE = {"prune": {"method": "magnitude", "amount": 0.9, "scope": "global"}}
NO_VNNI = CpuInfo("Test CPU", ())


@pytest.fixture(scope="module")
def mlp() -> LoadedModel:
    return load_model("mlp")


@pytest.fixture(scope="module")
def mlp_variants(mlp):
    return standard_variants(mlp, SPARSE, cpu=NO_VNNI)


class _Branchy(nn.Module):
    """Python control flow on a tensor's value: neither torch.fx nor torch.export can trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def table_of(milliseconds: dict[tuple[str, int], float]) -> pd.DataFrame:
    """A table shaped like latency_table's, from (variant, batch) → ms per batch."""
    return pd.DataFrame([{"variant": v, "batch": b, "ms_per_batch": ms} for (v, b), ms in milliseconds.items()])


# --- timing ----------------------------------------------------------------------------------


def test_a_batch_repeats_the_rows_it_has_when_asked_for_more() -> None:
    rows = (torch.arange(3.0).reshape(3, 1),)
    assert batch_of(rows, 5)[0].flatten().tolist() == [0.0, 1.0, 2.0, 0.0, 1.0]
    assert batch_of(rows, 2)[0].flatten().tolist() == [0.0, 1.0]


def test_calls_are_warmed_up_then_timed_in_rounds_whose_order_rotates() -> None:
    made = []
    calls = [lambda name=name: made.append(name) for name in "abc"]
    medians = median_milliseconds_in_turns(calls, warmup=1, repeats=3, sample_ms=0)
    assert "".join(made) == "abc" + "abc" + "bca" + "cab"
    assert len(medians) == 3 and all(m >= 0 for m in medians)


def test_a_call_of_microseconds_is_timed_in_samples_of_many_calls() -> None:
    made = []
    median_milliseconds_in_turns([lambda: made.append(1)], warmup=2, repeats=3, sample_ms=1.0)
    assert len(made) > 2 + 3 * 10


def test_torch_threads_are_set_for_the_block_and_restored_after() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_one_row_per_variant_and_batch_with_the_first_variant_as_reference(mlp) -> None:
    table = latency_table(mlp, {"a": mlp.module, "b": mlp.module}, batches=(1, 8), repeats=2)
    assert list(zip(table["variant"], table["batch"])) == [("a", 1), ("b", 1), ("a", 8), ("b", 8)]
    assert table[table["variant"] == "a"]["speed_up"].tolist() == [1.0, 1.0]
    assert (table["ms_per_batch"] > 0).all()


def test_progress_is_reported_after_every_round_of_every_batch(mlp) -> None:
    steps = []
    latency_table(mlp, {"a": mlp.module}, batches=(1, 8), repeats=3,
                  progress=lambda done, total, what: steps.append((done, total, what)))
    assert [done for done, _, _ in steps] == [1, 2, 3, 4, 5, 6]
    assert {total for _, total, _ in steps} == {6}
    assert steps[-1][2] == "batch 8, round 3 of 3"


class _Sleeper(nn.Module):
    """Waits 5 ms off the CPU, like a call held up by another program."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.005)
        return x


def test_cpu_time_leaves_out_the_time_the_thread_does_not_run(mlp) -> None:
    timed = {"sleeper": _Sleeper()}
    wall = latency_table(mlp, timed, batches=(1,), repeats=2)
    cpu = latency_table(mlp, timed, batches=(1,), repeats=2, cpu_time=True)
    assert wall["ms_per_batch"].iloc[0] >= 5.0
    assert cpu["ms_per_batch"].iloc[0] < 1.0


def test_no_variant_is_refused(mlp) -> None:
    with pytest.raises(DataError, match="at least one variant"):
        latency_table(mlp, {})


def test_a_repeat_count_below_one_is_refused(mlp) -> None:
    with pytest.raises(DataError, match="repeats must be a positive integer"):
        latency_table(mlp, {"a": mlp.module}, repeats=0)


# --- the machine ---------------------------------------------------------------------------


def test_vnni_is_read_from_the_cpu_flags() -> None:
    cpu = parse_cpuinfo("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 avx512_vnni avx_vnni\n")
    assert cpu == CpuInfo("Some Xeon", ("AVX512-VNNI", "AVX-VNNI"))
    assert cpu.vnni_note == "AVX512-VNNI, AVX-VNNI"


def test_a_cpu_whose_flags_list_no_vnni_says_so() -> None:
    cpu = parse_cpuinfo("model name\t: Old Core\nflags\t\t: fpu sse4_2 avx2 fma\n")
    assert cpu.int8_dot == () and cpu.vnni_note == "no VNNI"


def test_without_flags_vnni_is_unknown_not_absent() -> None:
    assert parse_cpuinfo("model name\t: Mystery\n").vnni_note == "VNNI unknown"


# --- the standard variants -------------------------------------------------------------------


def test_mlp_gets_torch_the_recipe_channels_removed_and_three_onnxruntime_variants(mlp_variants) -> None:
    assert list(mlp_variants.modules) == [TORCH_FP32, RECIPE_LABEL, "torch 50% channels removed",
                                          ORT_FP32, ORT_INT8_DYNAMIC, ORT_INT8_STATIC]
    assert mlp_variants.skipped == {}
    assert set(mlp_variants.onnx_files) == {ORT_FP32, ORT_INT8_DYNAMIC, ORT_INT8_STATIC}


def test_int8_is_compared_with_onnxruntime_fp32_and_the_rest_with_torch_fp32(mlp_variants) -> None:
    references = {label: technique.reference for label, technique in mlp_variants.techniques.items()}
    assert references == {RECIPE_LABEL: TORCH_FP32, "torch 50% channels removed": TORCH_FP32, ORT_FP32: TORCH_FP32,
                          ORT_INT8_DYNAMIC: ORT_FP32, ORT_INT8_STATIC: ORT_FP32}


def test_the_channels_removed_variant_is_a_smaller_dense_model(mlp, mlp_variants) -> None:
    smaller = mlp_variants.modules["torch 50% channels removed"]
    assert sum(p.numel() for p in smaller.parameters()) < sum(p.numel() for p in mlp.module.parameters())
    assert all(float((p == 0).float().mean()) < 0.5 for p in smaller.parameters())


def test_every_variant_gives_the_base_models_outputs_shape(mlp, mlp_variants) -> None:
    rows = mlp.evaluation.inputs[0][:3]
    with torch.inference_mode():
        shapes = {label: tuple(module(rows).shape) for label, module in mlp_variants.modules.items()}
    assert set(shapes.values()) == {(3, 10)}


def test_a_structured_recipe_removes_channels_at_its_own_amount(mlp) -> None:
    recipe = {"prune": {"method": "structured", "amount": 0.25}}
    built = standard_variants(mlp, recipe, recipe_module=mlp.module, cpu=NO_VNNI)
    assert "torch 25% channels removed" in built.modules
    assert built.techniques[RECIPE_LABEL].name == "Masked channels"


def test_an_empty_recipe_leaves_its_row_out_with_a_reason(mlp) -> None:
    built = standard_variants(mlp, {}, cpu=NO_VNNI)
    assert RECIPE_LABEL not in built.modules
    assert "recipe is empty" in built.skipped[RECIPE_LABEL]


@pytest.mark.filterwarnings("ignore:branchy. batch dimension is static")  # the export's retry, before it fails
def test_a_model_that_cannot_be_traced_gets_reasons_instead_of_an_error() -> None:
    branchy = LoadedModel("branchy", "module", _Branchy().eval(), {"fc.weight": "Linear"}, (torch.ones(2, 4),), None)
    built = standard_variants(branchy, SPARSE, cpu=NO_VNNI)
    assert list(built.modules) == [TORCH_FP32, RECIPE_LABEL]
    assert "cannot be traced by torch.fx" in built.skipped["torch 50% channels removed"]
    assert built.skipped[ORT_FP32].startswith("ONNX export failed: ")
    assert built.skipped[ORT_INT8_STATIC] == f"no ONNX file to quantize (see {ORT_FP32})"


def test_each_variant_is_scored_on_the_evaluation_data(mlp, mlp_variants) -> None:
    scores = variant_scores(mlp, mlp_variants.modules)
    assert list(scores) == list(mlp_variants.modules)
    assert scores[TORCH_FP32] == pytest.approx(0.9778, abs=1e-4)
    assert scores[ORT_FP32] == pytest.approx(scores[TORCH_FP32])


# --- verdicts ------------------------------------------------------------------------------


SPARSITY = Technique("Unstructured sparsity", TORCH_FP32, "the zeros go through the same dense kernels")
INT8 = Technique("Dynamic int8 (onnxruntime)", ORT_FP32, "this CPU has no VNNI")


def test_a_technique_below_the_threshold_at_both_batches_is_no_faster_and_says_why() -> None:
    table = table_of({(TORCH_FP32, 1): 1.0, ("sparse", 1): 1.02, (TORCH_FP32, 64): 10.0, ("sparse", 64): 9.9})
    (verdict,) = verdicts(table, {"sparse": SPARSITY})
    assert not verdict.faster
    assert verdict.text == ("Unstructured sparsity: 0.98x at batch 1, 1.01x at batch 64 against torch fp32 — "
                            "no faster here: the zeros go through the same dense kernels.")


def test_a_technique_faster_at_one_batch_only_says_which() -> None:
    table = table_of({(TORCH_FP32, 1): 1.0, ("cut", 1): 1.0, (TORCH_FP32, 64): 10.0, ("cut", 64): 5.0})
    (verdict,) = verdicts(table, {"cut": Technique("Channel removal (50%)", TORCH_FP32, "too small")})
    assert verdict.faster and verdict.speed_ups == {1: 1.0, 64: 2.0}
    assert "faster here at batch 64 only; at batch 1 no faster: too small." in verdict.text


def test_int8_is_judged_against_onnxruntime_fp32_not_torch() -> None:
    table = table_of({(TORCH_FP32, 1): 3.0, (ORT_FP32, 1): 1.0, ("int8", 1): 1.0,
                      (TORCH_FP32, 64): 30.0, (ORT_FP32, 64): 10.0, ("int8", 64): 10.5})
    (verdict,) = verdicts(table, {"int8": INT8})
    assert not verdict.faster
    assert verdict.text.startswith("Dynamic int8 (onnxruntime): 1.00x at batch 1, 0.95x at batch 64 against ORT fp32")
    assert verdict.text.endswith("no faster here: this CPU has no VNNI.")


def test_a_technique_faster_at_every_batch_is_faster_here() -> None:
    table = table_of({(TORCH_FP32, 1): 2.0, (ORT_FP32, 1): 1.0, (TORCH_FP32, 64): 20.0, (ORT_FP32, 64): 10.0})
    (verdict,) = verdicts(table, {ORT_FP32: Technique("onnxruntime fp32", TORCH_FP32, "same arithmetic")})
    assert verdict.faster and verdict.text.endswith("— faster here.")


def test_a_technique_not_in_the_table_gets_no_verdict() -> None:
    table = table_of({(TORCH_FP32, 1): 1.0})
    assert verdicts(table, {"sparse": SPARSITY}) == []


def test_the_int8_reason_names_the_cpus_vnni_or_its_absence() -> None:
    assert int8_slowness(CpuInfo("x", ("AVX512-VNNI",))).startswith("this CPU has AVX512-VNNI, so the int8 arithmetic")
    assert int8_slowness(NO_VNNI).startswith("this CPU has no VNNI: int8 dot products go through 16-bit")
    assert int8_slowness(CpuInfo("x", None)).startswith("whether this CPU has int8 dot-product instructions")


def test_the_int8_variants_carry_the_reason_for_this_cpu(mlp_variants) -> None:
    assert mlp_variants.techniques[ORT_INT8_STATIC].why_not_faster == int8_slowness(NO_VNNI)
