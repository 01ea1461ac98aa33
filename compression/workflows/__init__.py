"""What the command line and the dashboard both run: sweeps, sensitivity and search, gradual
pruning and its comparison with one-shot, distillation, latency tables, ONNX scoring.

Layer rule: imports io, graph and the kernel; the CLI and the pages call these, never copy them.
"""
