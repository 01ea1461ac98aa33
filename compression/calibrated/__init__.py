"""Pruning and quantization that look at a layer's inputs: one module per method.

``wanda`` (Sun et al. 2023), ``sparsegpt`` (Frantar & Alistarh 2023), ``gptq`` (Frantar et al.
2023) and ``awq`` (Lin et al. 2024) each take one layer's weight and its calibration inputs,
a (samples, in_features) matrix (``layer_inputs`` makes it from a Linear's or a convolution's
input) or the streamed ``InputStatistics`` of such matrices, and never change either.
``hessian`` holds what they share: X^T X, its damping and the inverse's Cholesky factor.

Layer rule: kernel. Imports torch and the other kernel modules only.
"""
