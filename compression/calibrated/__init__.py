"""Pruning and quantization that look at a layer's inputs: one module per method.

``wanda`` (Sun et al. 2023), ``sparsegpt`` (Frantar & Alistarh 2023), ``gptq`` (Frantar et al.
2023) and ``awq`` (Lin et al. 2024) each take one layer's weight and its calibration inputs,
a (samples, in_features) matrix (``layer_inputs`` makes it from a Linear's or a convolution's
input) or the streamed ``hessian.InputStatistics`` of such matrices, and never change either.
Shared: ``hessian`` (X^T X, damping, the inverse's Cholesky factor), ``obs`` (the column sweep
of SparseGPT and GPTQ), ``n_m`` (the N:M grouping of ``compression.pruning``), ``checks``.
For ``compress``: ``watch`` hands over each layer's inputs as a model runs, ``recipe_layer``
applies a recipe's sections to one layer (``compression.calibration_pass`` drives both).

Layer rule: kernel. Imports torch and the other kernel modules only.
"""
