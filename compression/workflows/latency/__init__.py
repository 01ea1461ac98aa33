"""Latency measured on this machine: the median time of one batch through a module.

Sizes and metrics say what a compression keeps; only a timing says whether it runs faster,
and that depends on the kernels and the CPU: unstructured zeros go through the same dense
kernels, int8 pays off only where the CPU and the layer sizes let it. So the numbers are
measured, per batch size, against the first variant timed in the same call.

``standard_variants`` builds the usual rows for a model and a recipe (torch fp32, the recipe
in torch, channels removed, onnxruntime fp32 and int8), ``latency_table`` times them, and
``verdicts`` says, from the measured table, which techniques made nothing faster here and why.

>>> import compression
>>> mlp = compression.load_model("mlp")
>>> built = standard_variants(mlp, {"prune": {"method": "magnitude", "amount": 0.9}})  # doctest: +SKIP
>>> table = latency_table(mlp, built.modules, repeats=5)  # doctest: +SKIP
>>> [v.text for v in verdicts(table, built.techniques)]  # doctest: +SKIP
['Unstructured sparsity: 0.98x at batch 1, 1.01x at batch 64 against torch fp32 — no faster here: ...']
"""
from compression.workflows.latency.cpu import CpuInfo, cpu_info, int8_slowness, parse_cpuinfo
from compression.workflows.latency.timing import (
    Progress,
    batch_of,
    latency_table,
    median_milliseconds_in_turns,
    torch_threads,
)
from compression.workflows.latency.variants import (
    DEFAULT_CHANNEL_AMOUNT,
    ORT_FP32,
    ORT_INT8_DYNAMIC,
    ORT_INT8_STATIC,
    RECIPE_LABEL,
    TORCH_FP32,
    StandardVariants,
    channels_label,
    recipe_technique,
    standard_variants,
    variant_scores,
)
from compression.workflows.latency.verdicts import NO_SPEEDUP, Technique, Verdict, verdicts

__all__ = [
    "DEFAULT_CHANNEL_AMOUNT", "NO_SPEEDUP", "ORT_FP32", "ORT_INT8_DYNAMIC", "ORT_INT8_STATIC", "RECIPE_LABEL",
    "TORCH_FP32", "CpuInfo", "Progress", "StandardVariants", "Technique", "Verdict", "batch_of", "channels_label",
    "cpu_info", "int8_slowness", "latency_table", "median_milliseconds_in_turns", "parse_cpuinfo",
    "recipe_technique", "standard_variants", "torch_threads", "variant_scores", "verdicts",
]
