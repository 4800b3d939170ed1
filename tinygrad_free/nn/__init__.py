"""Layers, containers and losses. Every module writes its own backward; nothing is traced."""

from .activation import GELU, Identity, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiHeadAttention
from .avgpool import AvgPool2D
from .batchnorm import BatchNorm
from .classes import register
from .context import is_grad_enabled, no_grad
from .conv1d import Conv1D
from .conv2d import Conv2D
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding
from .flatten import Flatten
from .global_avgpool import GlobalAvgPool2D
from .graph import Graph
from .gru import GRU
from .layernorm import LayerNorm
from .loss import ClassificationLoss, CrossEntropyLoss, Loss, MSELoss, NonFiniteError, SoftmaxMSELoss, get_loss
from .lstm import LSTM
from .maxpool import MaxPool2D
from .mean import Mean
from .merge import Add, Concat, Multiply
from .module import Module, load
from .node import Input, Node
from .parameter import Parameter
from .positional import ClassToken, PositionalEmbedding, SelectToken
from .reshape import Permute, Reshape
from .residual import Residual
from .rnn import RNN
from .sequential import Sequential
from .transformer import TransformerEncoderLayer

__all__ = [
    "Module",
    "Parameter",
    "Sequential",
    "Graph",
    "Input",
    "Node",
    "Residual",
    "Add",
    "Concat",
    "Multiply",
    "Dense",
    "Conv1D",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "GlobalAvgPool2D",
    "Flatten",
    "Dropout",
    "BatchNorm",
    "LayerNorm",
    "Embedding",
    "RNN",
    "LSTM",
    "GRU",
    "Identity",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "GELU",
    "MultiHeadAttention",
    "TransformerEncoderLayer",
    "PositionalEmbedding",
    "ClassToken",
    "SelectToken",
    "Reshape",
    "Permute",
    "Mean",
    "Softmax",
    "Loss",
    "CrossEntropyLoss",
    "MSELoss",
    "SoftmaxMSELoss",
    "ClassificationLoss",
    "NonFiniteError",
    "get_loss",
    "load",
    "register",
    "no_grad",
    "is_grad_enabled",
]
