"""The commands that write a model as a file another runtime loads: fuse and shrink (a
torch.export program), export (ONNX, optionally int8, or TFLite).

onnx, onnxruntime and litert-torch load only when ``export`` needs them.
"""
from __future__ import annotations

import argparse
from typing import Any

import compression
from compression.cli.arguments import check_output, load, read_recipe
from compression.cli.output import print_json
from compression.cli.quiet import import_without_c_stderr, library_prints_hidden
from compression.evaluation import max_output_difference
from compression.files import write_atomically
from compression.graph.fusion import check_fusion, fuse_conv_bn
from compression.io.program import program_bytes
from compression.workflows.onnx_scoring import export_and_score


def command_fuse(args: argparse.Namespace) -> None:
    out = check_output(args.out, args)
    model = load(args)
    fused = fuse_conv_bn(model)
    check = check_fusion(model, fused)
    payload: dict[str, Any] = {
        "model": model.name,
        "pairs": [list(pair) for pair in fused.pairs],
        "values_before": check.values_before,
        "values_after": check.values_after,
    }
    if model.evaluation is not None:
        payload.update(max_output_difference=check.max_output_difference, metric=model.evaluation.metric,
                       value_before=check.value_before, value_after=check.value_after)
    if out is not None:
        write_atomically(out, program_bytes(fused.module, model))
    if args.json:
        print_json(payload)
        return
    pairs = ", ".join(f"{layer}+{norm}" for layer, norm in fused.pairs) or "none (no layer feeds only a BatchNorm)"
    print(f"folded: {pairs}")
    print(f"stored values {payload['values_before']:,} -> {payload['values_after']:,}")
    if "metric" in payload:
        print(f"max |output difference| {payload['max_output_difference']:.2e}; {payload['metric']} "
              f"{payload['value_before']:.4f} -> {payload['value_after']:.4f}")
    if out is not None:
        print(f"wrote {out} (a torch.export program: load it with load_model or torch.export.load)")


def command_shrink(args: argparse.Namespace) -> None:
    out = check_output(args.out, args)
    model = load(args)
    result = compression.remove_channels(model, args.amount, norm=args.norm, scope=args.scope)
    program = program_bytes(result.module, model)
    payload: dict[str, Any] = {
        "model": model.name,
        "amount": args.amount,
        "norm": args.norm,
        "scope": args.scope,
        "removed": result.removed,
        "channels": {layer: len(indices) + result.module.get_submodule(layer).weight.shape[0]
                     for layer, indices in result.removed.items()},
        "skipped": result.skipped,
        "parameters_before": result.parameters_before,
        "parameters_after": result.parameters_after,
        "masked_recipe": result.masked_recipe,
    }
    if model.evaluation is not None:
        # Scored against the base model's data and outputs: a fidelity metric compares with the
        # original, not with the smaller model itself.
        masked = compression.compress(model, result.masked_recipe).module
        smaller, masked_score = compression.evaluate(model, result.module), compression.evaluate(model, masked)
        payload.update(metric=smaller.metric, value=smaller.value, masked_value=masked_score.value,
                       baseline_value=smaller.baseline_value,
                       max_output_difference=max_output_difference(model, result.module, masked))
    write_atomically(out, program)
    payload.update(file=str(out), file_bytes=len(program))
    if args.json:
        print_json(payload)
        return
    print(f"{model.name}: structured channel removal at amount {args.amount} (norm {args.norm}, scope {args.scope})")
    for layer, indices in result.removed.items():
        print(f"removed {layer}: {len(indices)} of {payload['channels'][layer]} output channels")
    for layer, reason in result.skipped.items():
        print(f"kept whole {layer}: {reason}")
    share = result.parameters_after / result.parameters_before if result.parameters_before else 1.0
    print(f"parameters {result.parameters_before:,} -> {result.parameters_after:,} ({share:.1%})")
    if "metric" in payload:
        print(f"{payload['metric']}: smaller {payload['value']:.4f}, masked {payload['masked_value']:.4f}, "
              f"baseline {payload['baseline_value']:.4f}; max |output difference| smaller vs masked "
              f"{payload['max_output_difference']:.2e}")
    print(f"wrote {out}: {len(program):,} B (a torch.export program: load it with load_model or torch.export.load)")


def command_export(args: argparse.Namespace) -> None:
    out = check_output(args.out, args)
    model = load(args)
    module = compression.compress(model, read_recipe(args.recipe)).module if args.recipe else model.module
    if args.format == "tflite":
        from compression.io.tflite_export import export_tflite, tflite_available

        if tflite_available() and not args.verbose:
            import_without_c_stderr("litert_torch")
        with library_prints_hidden(args.verbose):  # litert-torch prints each conversion step
            program = export_tflite(model, module)
        write_atomically(out, program)
        print(f"wrote {out} (TFLite, float32 weights as compressed)")
        return
    exported = export_and_score(model, module, args.int8)
    program = exported.program
    write_atomically(out, program)
    payload: dict[str, Any] = {"model": model.name, "format": "onnx", "int8": args.int8, "file_bytes": len(program)}
    if exported.evaluation is not None:
        evaluation = exported.evaluation
        payload.update(metric=evaluation.metric, value=evaluation.value, baseline_value=evaluation.baseline_value)
    if args.json:
        print_json(payload)
        return
    scored = f"; onnxruntime {payload['metric']} {payload['value']:.4f} (uncompressed model {payload['baseline_value']:.4f})" if "metric" in payload else ""
    print(f"wrote {out}: {len(program):,} B{scored}")
