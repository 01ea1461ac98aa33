"""Every file format in and out: the safety scan (one scanner per format), loading and its
dispatch (state dicts, programs, ONNX, Hugging Face folders), evaluation data, ONNX and TFLite
export, and ``zoo``, the only engine module that imports ``sample_models``.

Layer rule: imports ``compression.graph`` and the kernel, never workflows or the CLI.
"""
