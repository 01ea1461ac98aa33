"""ONNX in and out, in modules ordered so that each imports only those before it.

``runtime`` reads, checks and serialises ONNX protos and runs them with onnxruntime;
``layers`` tells which initializers are layer weights, how they are held and their output axes;
``importing`` turns an .onnx file into a module whose weights the engine compresses;
``export`` writes a module as ONNX and scores it; ``int8`` quantizes an ONNX model with
onnxruntime; ``initializers`` reads and replaces an ONNX model's weights.

Nothing is imported here: onnx and onnxruntime load only with the submodule a caller uses.
"""
