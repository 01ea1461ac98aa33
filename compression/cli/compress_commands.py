"""The commands of one-shot compression: models, info, apply, unpack, eval, sweep."""
from __future__ import annotations

import argparse
import os
from typing import Any

import compression
from compression.cli.arguments import (
    CommandError,
    check_journal,
    check_output,
    executor_of,
    load,
    read_recipe,
    source_of,
)
from compression.cli.output import print_counter, print_json, print_report
from compression.files import write_atomically
from compression.io import zoo
from compression.layer_table import layer_table
from compression.macs import MacCount
from compression.packing import dense_safetensors
from compression.units import format_bytes


def command_models(args: argparse.Namespace) -> None:
    rows = [{"name": name, "description": zoo.describe(name)} for name in zoo.zoo_names()]
    if args.json:
        print_json(rows)
        return
    for row in rows:
        print(f"{row['name']:<10} {row['description']}")


def command_info(args: argparse.Namespace) -> None:
    model = load(args)
    table = layer_table(model)
    info: dict[str, Any] = {
        "model": model.name,
        "format": model.format,
        "family": model.family,
        "description": model.description,
        "parameters": table.parameters,
        "bytes": table.bytes,
        "checkpoint": model.stored_weights.to_dict() if model.stored_weights else None,
        "compressible_parameters": table.compressible_parameters,
        "layers": [row.to_dict() for row in table.layers],
        "inputs": [spec.to_dict() for spec in model.input_specs],
        "macs": table.macs.to_dict(),
    }
    if model.evaluation is not None:
        baseline = compression.evaluate(model)
        info.update(metric=baseline.metric, baseline_value=baseline.value, evaluation=model.evaluation.description)
    if args.json:
        print_json(info)
        return
    print(f"{info['model']} ({info['format']}, {info['family']}): {info['parameters']:,} values, {format_bytes(info['bytes'])}")
    if model.stored_weights is not None:
        print(f"checkpoint: {model.stored_weights} (loaded as float32: {format_bytes(info['bytes'])})")
    print(f"{'layer':<48} {'type':<8} {'shape':<20} {'parameters':>12} {'MACs':>14}")
    for row in table.layers:
        macs = "-" if row.macs is None else f"{row.macs:,}"
        print(f"{row.name:<48} {row.type:<8} {str(row.shape):<20} {row.parameters:>12,} {macs:>14}")
    print(f"compressible: {info['compressible_parameters']:,} of {info['parameters']:,}")
    print(_macs_line(table.macs))
    for spec in model.input_specs:
        print(f"input {spec}" + (f": {spec.problem}" if spec.problem else ""))
    if "metric" in info:
        print(f"baseline {info['metric']}: {info['baseline_value']:.4f} on {info['evaluation']}")


def _macs_line(macs: MacCount) -> str:
    if macs.total is None:
        return f"MACs: not counted, {macs.reason}"
    shapes = ", ".join("×".join(map(str, shape)) or "scalar" for shape in macs.row_shapes)
    return f"MACs per input ({shapes}): {macs.total:,}, of which {macs.unattributed:,} in no compressible layer"


def _apply_report(model: compression.LoadedModel, result: compression.CompressionResult) -> dict[str, Any]:
    report = result.report.to_dict()
    if model.evaluation is not None:
        evaluation = compression.evaluate(model, result.module)
        report.update(metric=evaluation.metric, value=evaluation.value, baseline_value=evaluation.baseline_value)
        report.update(evaluation.extras)
    else:
        report.update(metric=None, value=None, baseline_value=None)
    return report


def command_apply(args: argparse.Namespace) -> None:
    out = check_output(args.out, args)
    dense_out = check_output(args.dense_out, args)
    if dense_out is not None and out is not None and dense_out.resolve() == out.resolve():
        raise CommandError("--out and --dense-out name the same file.")
    recipe = read_recipe(args.recipe)
    model = load(args)
    result = compression.compress(model, recipe)
    report = _apply_report(model, result)
    compression.save_packed(result, out)
    if os.path.getsize(out) != report["file_bytes"]:
        raise AssertionError("packed file size differs from the report")  # a bug, never bad input
    if dense_out is not None:
        write_atomically(dense_out, dense_safetensors(result.module.state_dict()))
    if args.json:
        print_json(report)
    else:
        print_report(report)
        print(f"wrote {out}" + (f" and {dense_out}" if dense_out else ""))


def command_unpack(args: argparse.Namespace) -> None:
    dense_out = check_output(args.dense_out, args)
    state, index = compression.load_packed(args.file)
    write_atomically(dense_out, dense_safetensors(state))
    print(f"wrote {dense_out}: {len(state)} tensors of model {index['model']!r}")


def command_eval(args: argparse.Namespace) -> None:
    model = load(args)
    module = compression.compress(model, read_recipe(args.recipe)).module if args.recipe else None
    evaluation = compression.evaluate(model, module)
    payload = {"model": model.name, "metric": evaluation.metric, "value": evaluation.value,
               "baseline_value": evaluation.baseline_value, **evaluation.extras}
    if args.json:
        print_json(payload)
        return
    extras = "".join(f", {key} {value:.4f}" for key, value in evaluation.extras.items())
    print(f"{model.name}: {evaluation.metric} {evaluation.value:.4f} (baseline {evaluation.baseline_value:.4f}{extras})")


def command_sweep(args: argparse.Namespace) -> None:
    csv_out = check_output(args.csv, args)
    journal = check_journal(args)
    base = read_recipe(args.recipe) if args.recipe else None
    model = load(args)
    progress = None if args.json else lambda done, total, _: print_counter(done, total, "configurations")
    with executor_of(args) as executor:
        frame = compression.sweep(source_of(args, model), args.amounts, args.bits, args.scheme, base,
                                  progress=progress, executor=executor, journal=journal)
    if csv_out is not None:
        write_atomically(csv_out, frame.to_csv(index=False).encode("utf-8"))
    if args.json:
        print(frame.drop(columns=["recipe"]).to_json(orient="records", indent=2))
    else:
        print(frame.drop(columns=["recipe", "metric", "baseline_value", "dense_fp32_bytes"]).to_string(index=False))
