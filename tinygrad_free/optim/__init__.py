"""Optimizers behind one ``step(loss=None)`` interface, created by class or by name.

    opt = optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    opt = optim.create("nadam", model.parameters(), lr=1e-3)

Add one with ``@optim.register("name")`` on an ``Optimizer`` subclass (see ``optim/eve.py``).
"""

from .adam import Adam
from .adamw import AdamW
from .eve import Eve
from .momentum import Momentum
from .nadam import NAdam
from .nag import NAG
from .optimizer import OPTIMIZERS, Optimizer, available, create, get, register
from .rmsprop import RMSProp
from .sgd import SGD

__all__ = [
    "Optimizer",
    "OPTIMIZERS",
    "register",
    "create",
    "get",
    "available",
    "SGD",
    "Momentum",
    "NAG",
    "RMSProp",
    "Adam",
    "AdamW",
    "NAdam",
    "Eve",
]
