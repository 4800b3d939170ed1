"""Layers, containers and losses. Every module writes its own backward; nothing is traced."""
from .activation import Identity, ReLU, Sigmoid, Softmax, Tanh
from .avgpool import AvgPool2D
from .batchnorm import BatchNorm
from .conv2d import Conv2D
from .dense import Dense
from .dropout import Dropout
from .flatten import Flatten
from .global_avgpool import GlobalAvgPool2D
from .layernorm import LayerNorm
from .loss import CrossEntropyLoss, Loss, MSELoss, NonFiniteError, get_loss
from .maxpool import MaxPool2D
from .module import Module, load
from .parameter import Parameter
from .sequential import Sequential

__all__ = ["Module", "Parameter", "Sequential", "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
           "Flatten", "Dropout", "BatchNorm", "LayerNorm", "Identity", "Sigmoid", "Tanh", "ReLU", "Softmax",
           "Loss", "CrossEntropyLoss", "MSELoss", "NonFiniteError", "get_loss", "load"]
