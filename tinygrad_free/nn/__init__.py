"""Layers, containers and losses. Every module writes its own backward; nothing is traced."""
from .activation import Identity, ReLU, Sigmoid, Softmax, Tanh
from .context import is_grad_enabled, no_grad
from .dense import Dense
from .graph import Graph
from .loss import CrossEntropyLoss, Loss, MSELoss, NonFiniteError, get_loss
from .merge import Add, Concat, Multiply
from .module import Module, load
from .node import Input, Node
from .parameter import Parameter
from .residual import Residual
from .sequential import Sequential
from .serialize import register

__all__ = ["Module", "Parameter", "Sequential", "Graph", "Input", "Node", "Residual", "Add", "Concat",
           "Multiply", "Dense", "Identity", "Sigmoid", "Tanh", "ReLU", "Softmax", "Loss", "CrossEntropyLoss",
           "MSELoss", "NonFiniteError", "get_loss", "load", "register", "no_grad", "is_grad_enabled"]
