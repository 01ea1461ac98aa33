"""The command line: ``python -m compression <command>``, a thin layer over the public API.

    python -m compression models
    python -m compression info simplenet --json
    python -m compression apply mlp --recipe recipe.json --out mlp.packed --dense-out mlp.safetensors
    python -m compression unpack mlp.packed --dense-out mlp.safetensors
    python -m compression eval minilm
    python -m compression sweep mlp --amounts 0,0.5,0.9 --bits 8,4 --csv sweep.csv
    python -m compression agp simplenet --final 0.9 --steps 6 --out simplenet-agp.packed
    python -m compression fuse bn_cnn --out bn_cnn-fused.pt2
    python -m compression shrink simplenet --amount 0.5 --out simplenet-shrunk.pt2
    python -m compression export mlp --recipe recipe.json --format onnx --int8 dynamic --out mlp.onnx
    python -m compression sensitivity mlp --csv sensitivity.csv
    python -m compression distill mlp --width 16 --temperature 4 --alpha 0.7
    python -m compression search mlp --tolerance 0.01 [--per-layer]

On bad input every command exits with status 2 and one line on stderr, writes no partial
file, and refuses to overwrite an input or an existing file (unless --force for outputs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import compression
from compression.errors import CompressionError
from compression.workflows.distillation import DistillConfig, EpochRecord, compare_distillation
from compression.evaluation import max_output_difference
from compression.files import write_atomically
from compression.io import zoo
from compression.graph.fusion import check_fusion, fuse_conv_bn
from compression.workflows.gradual import AgpSchedule, GradualStep, gradual_prune
from compression.io.onnx_export import (
    calibration_inputs_for,
    evaluate_onnx,
    export_onnx,
    quantize_onnx_dynamic,
    quantize_onnx_static,
)
from compression.packing import dense_safetensors
from compression.io.program import program_bytes
from compression.recipe import PRUNE_SCOPES, STRUCTURED_NORMS
from compression.workflows.search import search_layerwise, search_sparsity
from compression.workflows.sensitivity import DEFAULT_AMOUNTS, DEFAULT_BITS, sensitivity
from compression.io.tflite_export import export_tflite

EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """A problem with the command line itself (paths, options), reported like bad input."""


def _parse_floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _parse_ints(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _read_recipe(value: str) -> compression.Recipe:
    """A recipe from a JSON file, or inline JSON when the value starts with '{'."""
    if value.lstrip().startswith("{"):
        return compression.Recipe.from_json(value)
    path = Path(value)
    if not path.is_file():
        raise CommandError(f"recipe file {value!r} does not exist.")
    return compression.Recipe.from_json(path.read_text(encoding="utf-8"))


def _inputs_of(args: argparse.Namespace) -> list[Path]:
    paths = [Path(p) for p in (args.model, getattr(args, "data", None), getattr(args, "recipe", None)) if p]
    if getattr(args, "file", None):
        paths.append(Path(args.file))
    return [path.resolve() for path in paths if path.exists()]


def _check_output(path: str | None, args: argparse.Namespace) -> Path | None:
    """An output path that is not an input, and not an existing file unless --force."""
    if path is None:
        return None
    target = Path(path)
    if target.resolve() in _inputs_of(args):
        raise CommandError(f"output {path!r} is also an input; choose another name.")
    if target.is_dir():
        raise CommandError(f"output {path!r} is a directory; give a file name.")
    if target.exists() and not args.force:
        raise CommandError(f"output {path!r} already exists; pass --force to replace it.")
    if not target.parent.resolve().is_dir():
        raise CommandError(f"output folder {str(target.parent)!r} does not exist.")
    return target


def _load(args: argparse.Namespace) -> compression.LoadedModel:
    return compression.load_model(args.model, getattr(args, "data", None))


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, sort_keys=False, allow_nan=False))


def _format_bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def command_models(args: argparse.Namespace) -> None:
    rows = [{"name": name, "description": zoo.describe(name)} for name in zoo.zoo_names()]
    if args.json:
        _print_json(rows)
        return
    for row in rows:
        print(f"{row['name']:<10} {row['description']}")


def _layer_table(model: compression.LoadedModel) -> list[dict[str, Any]]:
    parameters = dict(model.module.state_dict())
    return [
        {
            "name": name,
            "type": model.layer_types[name],
            "shape": list(parameters[name].shape),
            "parameters": parameters[name].numel(),
            "bytes": parameters[name].numel() * parameters[name].element_size(),
        }
        for name in model.compressible
    ]


def command_info(args: argparse.Namespace) -> None:
    model = _load(args)
    layers = _layer_table(model)
    state = model.module.state_dict()
    info = {
        "model": model.name,
        "format": model.format,
        "description": model.description,
        "parameters": sum(t.numel() for t in state.values()),
        "bytes": sum(t.numel() * t.element_size() for t in state.values()),
        "compressible_parameters": sum(layer["parameters"] for layer in layers),
        "layers": layers,
    }
    if model.evaluation is not None:
        baseline = compression.evaluate(model)
        info.update(metric=baseline.metric, baseline_value=baseline.value, evaluation=model.evaluation.description)
    if args.json:
        _print_json(info)
        return
    print(f"{info['model']} ({info['format']}): {info['parameters']:,} values, {_format_bytes(info['bytes'])}")
    print(f"{'layer':<48} {'type':<8} {'shape':<20} {'parameters':>12}")
    for layer in layers:
        print(f"{layer['name']:<48} {layer['type']:<8} {str(tuple(layer['shape'])):<20} {layer['parameters']:>12,}")
    print(f"compressible: {info['compressible_parameters']:,} of {info['parameters']:,}")
    if "metric" in info:
        print(f"baseline {info['metric']}: {info['baseline_value']:.4f} on {info['evaluation']}")


def _apply_report(model: compression.LoadedModel, result: compression.CompressionResult) -> dict[str, Any]:
    report = result.report.to_dict()
    if model.evaluation is not None:
        evaluation = compression.evaluate(model, result.module)
        report.update(metric=evaluation.metric, value=evaluation.value, baseline_value=evaluation.baseline_value)
        report.update(evaluation.extras)
    else:
        report.update(metric=None, value=None, baseline_value=None)
    return report


def _print_report(report: dict[str, Any]) -> None:
    print(f"{'layer':<48} {'scheme':<18} {'bits':>4} {'sparsity':>8} {'encoding':<7} {'bytes':>10} {'SQNR dB':>8}")
    for layer in report["layers"]:
        sqnr = "inf" if layer["sqnr_db"] is None else f"{layer['sqnr_db']:.1f}"
        print(
            f"{layer['name']:<48} {layer['scheme']:<18} {layer['bits']:>4} {layer['sparsity']:>8.3f} "
            f"{layer['encoding']:<7} {layer['encoded_bytes']:>10,} {sqnr:>8}"
        )
    print(f"sparsity {report['sparsity']:.3f} of compressible weights")
    print(
        f"dense fp32 {report['dense_fp32_bytes']:,} B  encoded {report['encoded_bytes']:,} B  "
        f"file {report['file_bytes']:,} B  ({report['compression_ratio']:.1f}x smaller)"
    )
    if report.get("metric"):
        print(f"{report['metric']}: {report['value']:.4f} (baseline {report['baseline_value']:.4f})")


def command_apply(args: argparse.Namespace) -> None:
    out = _check_output(args.out, args)
    dense_out = _check_output(args.dense_out, args)
    if dense_out is not None and out is not None and dense_out.resolve() == out.resolve():
        raise CommandError("--out and --dense-out name the same file.")
    recipe = _read_recipe(args.recipe)
    model = _load(args)
    result = compression.compress(model, recipe)
    report = _apply_report(model, result)
    compression.save_packed(result, out)
    if os.path.getsize(out) != report["file_bytes"]:
        raise AssertionError("packed file size differs from the report")  # a bug, never bad input
    if dense_out is not None:
        write_atomically(dense_out, dense_safetensors(result.module.state_dict()))
    if args.json:
        _print_json(report)
    else:
        _print_report(report)
        print(f"wrote {out}" + (f" and {dense_out}" if dense_out else ""))


def command_unpack(args: argparse.Namespace) -> None:
    dense_out = _check_output(args.dense_out, args)
    state, index = compression.load_packed(args.file)
    write_atomically(dense_out, dense_safetensors(state))
    print(f"wrote {dense_out}: {len(state)} tensors of model {index['model']!r}")


def command_eval(args: argparse.Namespace) -> None:
    model = _load(args)
    module = compression.compress(model, _read_recipe(args.recipe)).module if args.recipe else None
    evaluation = compression.evaluate(model, module)
    payload = {"model": model.name, "metric": evaluation.metric, "value": evaluation.value,
               "baseline_value": evaluation.baseline_value, **evaluation.extras}
    if args.json:
        _print_json(payload)
        return
    extras = "".join(f", {key} {value:.4f}" for key, value in evaluation.extras.items())
    print(f"{model.name}: {evaluation.metric} {evaluation.value:.4f} (baseline {evaluation.baseline_value:.4f}{extras})")


def command_sweep(args: argparse.Namespace) -> None:
    csv_out = _check_output(args.csv, args)
    base = _read_recipe(args.recipe) if args.recipe else None
    model = _load(args)

    def progress(done: int, total: int, _: str) -> None:
        print(f"\r{done}/{total} configurations", end="" if done < total else "\n", file=sys.stderr, flush=True)

    frame = compression.sweep(model, args.amounts, args.bits, args.scheme, base, progress=progress)
    if csv_out is not None:
        write_atomically(csv_out, frame.to_csv(index=False).encode("utf-8"))
    if args.json:
        print(frame.drop(columns=["recipe"]).to_json(orient="records", indent=2))
    else:
        print(frame.drop(columns=["recipe", "metric", "baseline_value", "dense_fp32_bytes"]).to_string(index=False))


def command_agp(args: argparse.Namespace) -> None:
    out = _check_output(args.out, args)
    schedule = AgpSchedule(args.initial, args.final, args.steps, args.epochs_per_step)
    model = _load(args)

    def progress(done: int, total: int, step: GradualStep) -> None:
        if not args.json:
            theta = "-" if step.threshold is None else f"{step.threshold:.4f}"
            loss = "-" if step.train_loss is None else f"{step.train_loss:.4f}"
            print(f"step {step.step:>3}  target {step.target:.3f}  sparsity {step.sparsity:.3f}  "
                  f"θ {theta:>8}  train loss {loss:>7}  {model.evaluation.metric} {step.value:.4f}", flush=True)

    result = gradual_prune(model, schedule, scope=args.scope, seed=args.seed, progress=progress)
    final_recipe = _read_recipe(args.recipe) if args.recipe else compression.Recipe()
    packed = compression.compress(result.model, final_recipe)
    one_shot_recipe = {**final_recipe.to_dict(), "prune": {"method": "magnitude", "amount": args.final, "scope": args.scope}}
    one_shot = compression.compress(model, one_shot_recipe)
    comparison = {
        "gradual": {"value": result.steps[-1].value, "file_bytes": packed.report.file_bytes,
                    "sparsity": packed.report.sparsity},
        "one_shot": {"value": compression.evaluate(model, one_shot.module).value,
                     "file_bytes": one_shot.report.file_bytes, "sparsity": one_shot.report.sparsity},
    }
    if out is not None:
        compression.save_packed(packed, out)
    if args.json:
        _print_json({"model": model.name, "metric": model.evaluation.metric, "schedule": vars(schedule),
                     "steps": [vars(step) for step in result.steps], **comparison})
        return
    for name, row in comparison.items():
        print(f"{name:<8} {model.evaluation.metric} {row['value']:.4f}  sparsity {row['sparsity']:.3f}  "
              f"file {row['file_bytes']:,} B")
    if out is not None:
        print(f"wrote {out}")


def command_fuse(args: argparse.Namespace) -> None:
    out = _check_output(args.out, args)
    model = _load(args)
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
        _print_json(payload)
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
    out = _check_output(args.out, args)
    model = _load(args)
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
        _print_json(payload)
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


def _print_progress(done: int, total: int, *_: Any) -> None:
    print(f"\r{done}/{total} evaluations", end="" if done < total else "\n", file=sys.stderr, flush=True)


def command_sensitivity(args: argparse.Namespace) -> None:
    csv_out = _check_output(args.csv, args)
    model = _load(args)
    frame = sensitivity(model, amounts=args.amounts, bits=args.bits, scheme=args.scheme, progress=_print_progress)
    if csv_out is not None:
        write_atomically(csv_out, frame.drop(columns=["recipe"]).to_csv(index=False).encode("utf-8"))
    shown = frame.drop(columns=["recipe"])
    if args.json:
        print(shown.to_json(orient="records", indent=2))
        return
    table = shown.pivot_table(index="layer", columns=["kind", "level"], values="drop", sort=False)
    print(f"drop in {model.evaluation.metric} when only that layer is pruned (amount) or quantized (bits):")
    print(table.round(4).to_string())


def command_search(args: argparse.Namespace) -> None:
    model = _load(args)
    if args.per_layer:
        curves = sensitivity(model, bits=(32,), progress=_print_progress)
        result = search_layerwise(model, curves, tolerance=args.tolerance, resolution=args.resolution,
                                  progress=_print_progress)
    else:
        result = search_sparsity(model, tolerance=args.tolerance, resolution=args.resolution, progress=_print_progress)
    steps = result.steps.drop(columns=["recipe", "thresholds"], errors="ignore")
    if args.json:
        _print_json({"amount": result.amount, "threshold": result.threshold, "metric": result.metric,
                     "value": result.value, "baseline_value": result.baseline_value, "drop": result.drop,
                     "tolerance": result.tolerance, "recipe": result.recipe,
                     "steps": json.loads(steps.to_json(orient="records"))})
        return
    print(steps.to_string(index=False))
    print(f"largest sparsity within a drop of {args.tolerance}: {result.amount:.2f} "
          f"({result.metric} {result.value:.4f}, drop {result.drop:.4f}); recipe {json.dumps(result.recipe)}")


def command_distill(args: argparse.Namespace) -> None:
    out = _check_output(args.out, args)
    config = DistillConfig(temperature=args.temperature, alpha=args.alpha, epochs=args.epochs,
                           learning_rate=args.learning_rate, seed=args.seed, width=args.width)
    teacher = _load(args)

    def progress(done: int, total: int, record: EpochRecord) -> None:
        if not args.json:
            run = "distilled" if done <= config.epochs else "labels only"
            print(f"{run:<11} epoch {record.epoch:>3}  loss {record.loss:.4f}  accuracy {record.value:.4f}", flush=True)

    with_teacher, without = compare_distillation(teacher, config, progress=progress)
    if out is not None:
        compression.save_packed(compression.compress(with_teacher.model, {}), out)
    rows = {
        "teacher": {"parameters": with_teacher.teacher_parameters, "value": compression.evaluate(teacher).value,
                    "file_bytes": compression.compress(teacher, {}).report.file_bytes},
        "distilled": {"parameters": with_teacher.parameters, "value": with_teacher.value, "file_bytes": with_teacher.file_bytes},
        "labels_only": {"parameters": without.parameters, "value": without.value, "file_bytes": without.file_bytes},
    }
    if args.json:
        _print_json({"model": teacher.name, "config": vars(config), **rows})
        return
    for name, row in rows.items():
        print(f"{name:<12} {row['parameters']:>8,} parameters  accuracy {row['value']:.4f}  file {row['file_bytes']:,} B")
    if out is not None:
        print(f"wrote {out} (the distilled student)")


def command_export(args: argparse.Namespace) -> None:
    out = _check_output(args.out, args)
    model = _load(args)
    module = compression.compress(model, _read_recipe(args.recipe)).module if args.recipe else model.module
    if args.format == "tflite":
        write_atomically(out, export_tflite(model, module))
        print(f"wrote {out} (TFLite, float32 weights as compressed)")
        return
    program = export_onnx(model, module)
    if args.int8 == "dynamic":
        program = quantize_onnx_dynamic(program)
    elif args.int8 in ("qdq", "qoperator"):
        program = quantize_onnx_static(program, calibration_inputs_for(model), format=args.int8)
    write_atomically(out, program)
    payload: dict[str, Any] = {"model": model.name, "format": "onnx", "int8": args.int8, "file_bytes": len(program)}
    if model.evaluation is not None:
        evaluation = evaluate_onnx(model, program)
        payload.update(metric=evaluation.metric, value=evaluation.value, baseline_value=evaluation.baseline_value)
    if args.json:
        _print_json(payload)
        return
    scored = f"; onnxruntime {payload['metric']} {payload['value']:.4f} (uncompressed model {payload['baseline_value']:.4f})" if "metric" in payload else ""
    print(f"wrote {out}: {len(program):,} B{scored}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compression", description="Compress PyTorch models.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable, help_text: str, model: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler, force=False)
        if model:
            sub.add_argument("model", help="a zoo name (see `models`) or a model file/folder")
        return sub

    sub = command("models", command_models, "list the sample models", model=False)
    sub.add_argument("--json", action="store_true")

    sub = command("info", command_info, "layers, sizes and baseline metric of a model")
    sub.add_argument("--data", help="evaluation data: .npz with x (and optional labels y)")
    sub.add_argument("--json", action="store_true")

    sub = command("apply", command_apply, "compress a model and write the packed file")
    sub.add_argument("--recipe", required=True, help="recipe JSON file (or inline JSON)")
    sub.add_argument("--out", required=True, help="packed file to write")
    sub.add_argument("--dense-out", help="also write the dense weights as .safetensors")
    sub.add_argument("--data", help="evaluation data: .npz with x (and optional labels y)")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace existing output files")

    sub = command("unpack", command_unpack, "decode a packed file into dense .safetensors", model=False)
    sub.add_argument("file", help="packed file written by `apply`")
    sub.add_argument("--dense-out", required=True, help=".safetensors file to write")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")
    sub.set_defaults(model=None)

    sub = command("eval", command_eval, "evaluate a model (optionally after a recipe)")
    sub.add_argument("--recipe", help="recipe JSON file (or inline JSON) to apply first")
    sub.add_argument("--data", help="evaluation data: .npz with x (and optional labels y)")
    sub.add_argument("--json", action="store_true")

    sub = command("sweep", command_sweep, "compress and evaluate a grid of amounts x bits")
    sub.add_argument("--amounts", type=_parse_floats, required=True, help="e.g. 0,0.5,0.9")
    sub.add_argument("--bits", type=_parse_ints, required=True, help="e.g. 8,4 (32 = no quantization)")
    sub.add_argument("--scheme", type=lambda s: s.split(","), default=["linear"],
                     help="comma-separated: linear, pow2, kmeans, fp16, bf16, fp8_e4m3, fp8_e5m2")
    sub.add_argument("--recipe", help="base recipe for the other fields (scope, granularity, ...)")
    sub.add_argument("--data", help="evaluation data: .npz with x (and optional labels y)")
    sub.add_argument("--csv", help="write the table as CSV")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing CSV file")

    sub = command("agp", command_agp, "gradual magnitude pruning with fine-tuning (Zhu & Gupta's schedule)")
    defaults = AgpSchedule()
    sub.add_argument("--initial", type=float, default=defaults.initial, help="sparsity of the first step")
    sub.add_argument("--final", type=float, default=defaults.final, help="sparsity of the last step")
    sub.add_argument("--steps", type=int, default=defaults.steps, help="pruning steps after the first")
    sub.add_argument("--epochs-per-step", type=int, default=defaults.epochs_per_step,
                     help="fine-tuning epochs after each step")
    sub.add_argument("--scope", choices=["global", "layer"], default="global")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--recipe", help="quantize (or other) settings for the packed result")
    sub.add_argument("--out", help="write the pruned, fine-tuned model as a packed file")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")

    sub = command("sensitivity", command_sensitivity, "metric drop when one layer at a time is pruned or quantized")
    sub.add_argument("--amounts", type=_parse_floats, default=list(DEFAULT_AMOUNTS), help="e.g. 0,0.5,0.9")
    sub.add_argument("--bits", type=_parse_ints, default=list(DEFAULT_BITS), help="e.g. 8,4,2 (32 = none)")
    sub.add_argument("--scheme", default="linear", help="quantization scheme for the bits rows")
    sub.add_argument("--data", help="evaluation data: .npz with x (and optional labels y)")
    sub.add_argument("--csv", help="write the table as CSV")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing CSV file")

    sub = command("search", command_search, "the largest sparsity whose metric drop stays within a tolerance")
    sub.add_argument("--tolerance", type=float, required=True, help="largest allowed drop, e.g. 0.01")
    sub.add_argument("--per-layer", action="store_true",
                     help="spread the sparsity over layers by their measured sensitivity")
    sub.add_argument("--resolution", type=float, default=0.01, help="amount grid step (default 0.01)")
    sub.add_argument("--data", help="evaluation data: .npz with x (and optional labels y)")
    sub.add_argument("--json", action="store_true")

    sub = command("distill", command_distill, "train a small student on the model's soft targets, and one on labels only")
    defaults = DistillConfig()
    sub.add_argument("--width", type=int, default=defaults.width, help="the student's hidden units")
    sub.add_argument("--temperature", type=float, default=defaults.temperature)
    sub.add_argument("--alpha", type=float, default=defaults.alpha, help="weight of the soft targets (0: labels only)")
    sub.add_argument("--epochs", type=int, default=defaults.epochs)
    sub.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    sub.add_argument("--seed", type=int, default=defaults.seed)
    sub.add_argument("--out", help="write the distilled student as a packed file")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")

    sub = command("export", command_export, "export a (compressed) model to ONNX, optionally int8, and score it with onnxruntime")
    sub.add_argument("--recipe", help="recipe JSON file (or inline JSON) to apply first")
    sub.add_argument("--format", choices=["onnx", "tflite"], default="onnx")
    sub.add_argument("--int8", choices=["none", "dynamic", "qdq", "qoperator"], default="none",
                     help="onnxruntime int8: dynamic, or static (calibrated on training rows) as QDQ or QOperator")
    sub.add_argument("--out", required=True, help="file to write (.onnx or .tflite)")
    sub.add_argument("--data", help="evaluation data: .npz with x (and optional labels y)")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")

    sub = command("fuse", command_fuse, "fold BatchNorm into the conv or linear layer before it")
    sub.add_argument("--data", help="evaluation data: .npz with x (and optional labels y)")
    sub.add_argument("--out", help="write the fused model as a torch.export program (.pt2)")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")

    sub = command("shrink", command_shrink,
                  "remove the output channels structured pruning would mask: a smaller dense model (.pt2)")
    sub.add_argument("--amount", type=float, required=True,
                     help="fraction of each layer's output channels to remove, in [0, 1)")
    sub.add_argument("--norm", choices=STRUCTURED_NORMS, default="l1",
                     help="channel score: mean |w| (l1) or RMS (l2)")
    sub.add_argument("--scope", choices=PRUNE_SCOPES, default="layer",
                     help="layer: the amount of each layer; global: one cut over all layers")
    sub.add_argument("--out", required=True, help="write the smaller model as a torch.export program (.pt2)")
    sub.add_argument("--data", help="evaluation data: .npz with x (and optional labels y)")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.handler(args)
    except (CompressionError, CommandError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
