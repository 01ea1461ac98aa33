"""Structured pruning that removes channels: a smaller dense copy of a model.

The engine's structured masks zero whole output channels of a layer; this package takes the
same channels out. The copy's layers have fewer output channels, and the layers that read
them (the next convolution, the Linear after a flatten, the BatchNorm between) fewer inputs,
so it is smaller and faster with no sparse kernels at all.

A masked channel is not silent: its weights are zero but its bias is not, so it outputs a
constant, which BatchNorm and the activation map to another constant. Removing the channel,
that constant's contribution is added back where it lands: into the consumer's bias, or,
where the consumer zero-pads its input (the border sees less of the constant than the
interior), as a fixed one-channel convolution of ones. The copy therefore gives the outputs of
``compress(model, result.masked_recipe).module``, the engine's masked model, up to float
rounding: removal changes the speed, not the function.

Channels are followed through the traced graph (``torch.fx``) only where the mapping is
exact; a layer whose channels reach a residual add, a concatenation, an unmapped reshape or the
model's output is left whole, and ``skipped`` says why.

>>> import torch
>>> from torch import nn
>>> from compression.compress import compress
>>> _ = torch.manual_seed(0)
>>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(),
...                       nn.Flatten(), nn.Linear(16 * 4 * 4, 10)).eval()
>>> x = torch.randn(2, 3, 8, 8)
>>> result = remove_channels(model, 0.5, example_inputs=(x,))
>>> result.module.get_submodule("2").weight.shape  # 8 of 16 filters, reading 4 of 8 channels
torch.Size([8, 4, 3, 3])
>>> result.skipped
{'5': "its channels reach the model's output, whose shape must not change"}
>>> masked = compress(model, result.masked_recipe).module
>>> torch.allclose(result.module(x), masked(x), atol=1e-5)
True
"""
from compression.graph.channels.removal import ChannelResult, remove_channels

__all__ = ["ChannelResult", "remove_channels"]
