"""Rewrites that follow a model's torch.fx graph: tracing, BatchNorm folding (``fusion``) and
removing pruned channels for real (``channels``).

Layer rule: imports the kernel only (``compression.*`` modules outside the subpackages).
"""
