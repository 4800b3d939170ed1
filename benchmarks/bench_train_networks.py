"""The networks bench_train.py times, written once per implementation (``--network``).

* ``mlp``: the reference network of the assignment, 784-128-128-128-10 tanh, on flat images.
* ``convnet``: Keras's ``mnist_convnet`` example (Conv2D 32 3x3 relu, MaxPool 2, Conv2D 64 3x3
  relu, MaxPool 2, Flatten, Dropout 0.5, Dense 10; 34,826 parameters), on 28x28 images: NCHW for
  us and PyTorch, NHWC (Keras's default ``channels_last``, the layout its JAX backend runs
  fastest) for Keras.
* ``lstm``: the ``mnist_lstm`` recipe's network: each image as 28 steps of 28 pixels, an LSTM of 128
  units, its output at the last step, a Dense to 10 logits (82,186 parameters); PyTorch's
  ``nn.LSTM(batch_first=True)`` and Keras's ``layers.LSTM`` (its cuDNN-compatible defaults: tanh,
  sigmoid, no recurrent dropout).

Each implementation gets the same layers in its own idiom, Adam (lr 1e-3) and softmax
cross-entropy on logits; weights start from each library's own default initialisation.
"""

NETWORKS = {
    "mlp": "784-128-128-128-10 tanh MLP, float32, Adam lr 1e-3, softmax cross-entropy",
    "convnet": "Keras mnist_convnet (Conv 32 3x3 relu, MaxPool 2, Conv 64 3x3 relu, MaxPool 2, "
    "Flatten, Dropout 0.5, Dense 10; 34,826 parameters), float32, Adam lr 1e-3, softmax cross-entropy",
    "lstm": "mnist_lstm (28 steps of 28 pixels, LSTM 128, last step, Dense 10; 82,186 parameters), float32, "
    "Adam lr 1e-3, softmax cross-entropy",
}

IMAGE = (1, 28, 28)


def images(x, network, layout="nchw"):
    """The training rows shaped for ``network``: flat for the MLP, images for the convnet."""
    if network == "mlp":
        return x
    if network == "lstm":  # rows as steps, the same in every layout
        return x.reshape(len(x), 28, 28)
    x = x.reshape(len(x), *IMAGE)
    return x.transpose(0, 2, 3, 1).copy() if layout == "nhwc" else x


def ours(network, seed):
    import numpy as np

    from tinygrad_free import nn

    if network == "mlp":
        try:
            from tinygrad_free.recipes import build_mlp
        except ImportError:  # a --baseline checkout from before the recipes moved into the package
            from models import build_mlp
        return build_mlp(
            784, 3, 128, activation="tanh", weight_init="xavier", num_classes=10, dtype=np.float32, rng=seed
        )
    if network == "lstm":
        return nn.Sequential(nn.LSTM(28, 128, return_sequences=False, rng=seed), nn.Dense(128, 10, rng=seed + 1))
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2D(1, 32, 3, activation="relu", rng=rng),
        nn.MaxPool2D(2),
        nn.Conv2D(32, 64, 3, activation="relu", rng=rng),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dropout(0.5, rng=seed),
        nn.Dense(1600, 10, rng=rng),
    )


def torch_model(network):
    import torch

    nn = torch.nn
    if network == "lstm":

        class LastStep(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm, self.head = nn.LSTM(28, 128, batch_first=True), nn.Linear(128, 10)

            def forward(self, x):
                return self.head(self.lstm(x)[0][:, -1])

        return LastStep()
    if network == "mlp":
        return nn.Sequential(
            nn.Linear(784, 128),
            nn.Tanh(),
            nn.Linear(128, 128),
            nn.Tanh(),
            nn.Linear(128, 128),
            nn.Tanh(),
            nn.Linear(128, 10),
        )
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(1600, 10),
    )


def keras_model(network):
    import keras

    layers = keras.layers
    if network == "lstm":
        return keras.Sequential([keras.Input((28, 28)), layers.LSTM(128), layers.Dense(10)])
    if network == "mlp":
        return keras.Sequential(
            [
                keras.Input((784,)),
                layers.Dense(128, activation="tanh"),
                layers.Dense(128, activation="tanh"),
                layers.Dense(128, activation="tanh"),
                layers.Dense(10),
            ]
        )
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10),
        ]
    )
