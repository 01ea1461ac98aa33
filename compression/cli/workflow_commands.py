"""The commands that run a workflow over many compressions or trainings: agp, sensitivity,
search, distill.

The sensitivity and search workflows bring pandas: they are imported when their command runs,
so the other commands start without it.
"""
from __future__ import annotations

import argparse
import json

import compression
from compression.cli.arguments import check_journal, check_output, executor_of, load, read_recipe, source_of
from compression.cli.output import print_evaluations, print_json
from compression.files import write_atomically
from compression.workflows.distillation import DistillConfig, EpochRecord, compare_distillation
from compression.workflows.gradual import AgpSchedule, GradualStep
from compression.workflows.gradual_comparison import GRADUAL, compare_gradual


def command_agp(args: argparse.Namespace) -> None:
    out = check_output(args.out, args)
    schedule = AgpSchedule(args.initial, args.final, args.steps, args.epochs_per_step)
    recipe = read_recipe(args.recipe) if args.recipe else compression.Recipe()
    model = load(args)
    epochs = schedule.epochs_per_step * (schedule.steps + 1)

    def progress(done: int, total: int, arm: str, step: GradualStep) -> None:
        if args.json or arm != GRADUAL:
            return
        theta = "-" if step.threshold is None else f"{step.threshold:.4f}"
        loss = "-" if step.train_loss is None else f"{step.train_loss:.4f}"
        print(f"step {step.step:>3}  target {step.target:.3f}  sparsity {step.sparsity:.3f}  "
              f"θ {theta:>8}  train loss {loss:>7}  {model.evaluation.metric} {step.value:.4f}", flush=True)
        if done == total - 1:
            print(f"one-shot to {schedule.final:.3f}, then {epochs} epochs of fine-tuning (the fair control)…", flush=True)

    comparison = compare_gradual(model, schedule, recipe, scope=args.scope, seed=args.seed, progress=progress)
    if out is not None:
        compression.save_packed(comparison.packed, out)
    arms = {arm.name: arm.to_dict() for arm in comparison.arms}
    if args.json:
        print_json({"model": model.name, "metric": comparison.metric, "schedule": vars(schedule),
                    "prune": comparison.prune.to_dict(),
                    "steps": [vars(step) for step in comparison.gradual.steps], **arms})
        return
    packing = "" if comparison.packing.is_empty else f"; every arm packed with {comparison.packing.to_json()}"
    print(f"{comparison.prune.method} pruning, {comparison.prune.scope} scope, to sparsity {schedule.final:.3f}{packing}:")
    width = max(map(len, arms))
    for name, row in arms.items():
        print(f"{name:<{width}} {comparison.metric} {row['value']:.4f}  sparsity {row['sparsity']:.3f}  "
              f"file {row['file_bytes']:,} B  fine-tuning {row['epochs']} epochs")
    if out is not None:
        print(f"wrote {out}")


def command_sensitivity(args: argparse.Namespace) -> None:
    from compression.workflows.sensitivity import sensitivity

    csv_out = check_output(args.csv, args)
    journal = check_journal(args)
    model = load(args)
    levels = {name: value for name in ("amounts", "bits") if (value := getattr(args, name)) is not None}
    progress = None if args.json else print_evaluations
    with executor_of(args) as executor:
        frame = sensitivity(source_of(args, model), scheme=args.scheme, prune_method=args.method, progress=progress,
                            executor=executor, journal=journal, **levels)
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
    from compression.workflows.search import search_layerwise, search_sparsity
    from compression.workflows.sensitivity import sensitivity

    model = load(args)
    source = source_of(args, model)
    progress = None if args.json else print_evaluations
    with executor_of(args) as executor:
        if args.per_layer:
            curves = sensitivity(source, bits=(32,), progress=progress, executor=executor)
            result = search_layerwise(source, curves, tolerance=args.tolerance, resolution=args.resolution,
                                      progress=progress, executor=executor)
        else:
            result = search_sparsity(source, tolerance=args.tolerance, resolution=args.resolution, progress=progress,
                                     executor=executor)
    steps = result.steps.drop(columns=["recipe", "thresholds"], errors="ignore")
    if args.json:
        print_json({"amount": result.amount, "threshold": result.threshold, "metric": result.metric,
                    "value": result.value, "baseline_value": result.baseline_value, "drop": result.drop,
                    "tolerance": result.tolerance, "recipe": result.recipe, "rounds": result.rounds,
                    "steps": json.loads(steps.to_json(orient="records"))})
        return
    print(steps.to_string(index=False))
    print(f"largest sparsity within a drop of {args.tolerance}: {result.amount:.2f} "
          f"({result.metric} {result.value:.4f}, drop {result.drop:.4f}); recipe {json.dumps(result.recipe)}")


def command_distill(args: argparse.Namespace) -> None:
    out = check_output(args.out, args)
    config = DistillConfig(temperature=args.temperature, alpha=args.alpha, epochs=args.epochs,
                           learning_rate=args.learning_rate, seed=args.seed, width=args.width)
    teacher = load(args)

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
        print_json({"model": teacher.name, "config": vars(config), **rows})
        return
    for name, row in rows.items():
        print(f"{name:<12} {row['parameters']:>8,} parameters  accuracy {row['value']:.4f}  file {row['file_bytes']:,} B")
    if out is not None:
        print(f"wrote {out} (the distilled student)")
