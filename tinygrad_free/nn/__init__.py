"""Layers, containers and losses. Every module writes its own backward; nothing is traced."""
from .activation import Identity, ReLU, Sigmoid, Softmax, Tanh
from .dense import Dense
from .loss import CrossEntropyLoss, Loss, MSELoss, NonFiniteError, get_loss
from .module import Module, load
from .parameter import Parameter
from .sequential import Sequential

__all__ = ["Module", "Parameter", "Sequential", "Dense", "Identity", "Sigmoid", "Tanh", "ReLU", "Softmax",
           "Loss", "CrossEntropyLoss", "MSELoss", "NonFiniteError", "get_loss", "load"]
