"""Keras 3 weights (JAX backend) into the matching tinygrad_free architecture: a Keras MLP and a CNN
with BatchNorm give the same outputs (float64, 1e-6 relative) from the model, its
``get_weights()``, a ``.weights.h5`` and a ``.keras`` file; LSTM and GRU weights convert to
PyTorch's layout (checked against torch's LSTM/GRU); a weight that does not fit is named."""

import os

import numpy as np
import pytest

from tinygrad_free import nn
from tinygrad_free.exchange import load_keras_weights

F64 = np.float64


@pytest.fixture(scope="module")
def keras():
    """Keras on JAX in float64, put back to float32 afterwards."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    jax = pytest.importorskip("jax")
    previous_x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("keras was imported with another backend")
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    keras.utils.set_random_seed(0)
    yield keras
    keras.config.set_floatx(previous)
    jax.config.update("jax_enable_x64", previous_x64)


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def keras_cnn(keras):
    L = keras.layers
    model = keras.Sequential(
        [
            keras.Input((10, 9, 3)),
            L.Conv2D(6, 3, padding="same"),
            L.BatchNormalization(),
            L.ReLU(),
            L.MaxPooling2D(2),
            L.Conv2D(8, (3, 2), strides=(1, 2), activation="relu"),
            L.Flatten(),
            L.Dropout(0.3),
            L.Dense(7, activation="tanh"),
            L.Dense(4),
        ]
    )
    bn = model.layers[1]
    rng = np.random.default_rng(3)
    bn.set_weights([rng.uniform(0.5, 1.5, 6), rng.normal(0, 0.3, 6), rng.normal(0, 0.3, 6), rng.uniform(0.5, 2, 6)])
    return model


def ours_cnn(eps=1e-5):
    return nn.Sequential(
        nn.Conv2D(3, 6, 3, padding=1, dtype=F64),
        nn.BatchNorm(6, eps=eps, dtype=F64),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Conv2D(6, 8, (3, 2), stride=(1, 2), activation="relu", dtype=F64),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Dense(8 * 3 * 2, 7, activation="tanh", dtype=F64),
        nn.Dense(7, 4, dtype=F64),
    )


def test_a_keras_mlp_loads_from_the_model_and_from_get_weights(keras, rng):
    L = keras.layers
    km = keras.Sequential(
        [keras.Input((12,)), L.Dense(16, activation="relu"), L.Dense(8, activation="sigmoid"), L.Dense(3)]
    )
    x = rng.standard_normal((6, 12))
    ref = np.asarray(km(x))
    for source in (km, km.get_weights()):
        ours = nn.Sequential(
            nn.Dense(12, 16, activation="relu", dtype=F64),
            nn.Dense(16, 8, activation="sigmoid", dtype=F64),
            nn.Dense(8, 3, dtype=F64),
        )
        ours.load_keras_weights(source)
        assert rel_err(ours.eval()(x), ref) < 1e-6
        np.testing.assert_array_equal(ours[0].W.data, km.layers[0].get_weights()[0])


def test_a_keras_cnn_loads_with_nhwc_kernels_flatten_order_and_batchnorm_epsilon(keras, rng):
    km = keras_cnn(keras)
    x = rng.standard_normal((5, 3, 10, 9))
    ref = np.asarray(km(x.transpose(0, 2, 3, 1)))
    ours = ours_cnn()
    ours.load_keras_weights(km)
    assert ours[1].eps == pytest.approx(1e-3) and ours[1].momentum == pytest.approx(0.01)
    assert rel_err(ours.eval()(x), ref) < 1e-6
    np.testing.assert_array_equal(ours[0].W.data, km.layers[0].get_weights()[0].transpose(3, 2, 0, 1))
    # from the arrays alone the epsilon is not known: Keras's default must be built in
    ours = ours_cnn(eps=1e-3)
    load_keras_weights(ours, km.get_weights())
    assert rel_err(ours.eval()(x), ref) < 1e-6


def test_keras_weight_files_load_in_the_models_layer_order(keras, rng, tmp_path):
    km = keras_cnn(keras)
    x = rng.standard_normal((2, 3, 10, 9))
    ref = np.asarray(km(x.transpose(0, 2, 3, 1)))
    km.save_weights(tmp_path / "cnn.weights.h5")
    km.save(tmp_path / "cnn.keras")
    for path in ("cnn.weights.h5", "cnn.keras"):
        ours = ours_cnn(eps=1e-3)
        ours.load_keras_weights(tmp_path / path)
        assert rel_err(ours.eval()(x), ref) < 1e-6, path
    # twelve Dense layers: HDF5 lists the groups dense, dense_1, dense_10, dense_11, dense_2, ...
    L = keras.layers
    deep = keras.Sequential([keras.Input((3,))] + [L.Dense(3 + (i == 11), name=f"z{11 - i}") for i in range(12)])
    deep.save_weights(tmp_path / "deep.weights.h5")
    x = rng.standard_normal((4, 3))
    groups = ["dense"] + [f"dense_{i}" for i in range(1, 12)]
    for options in ({}, {"layer_names": groups}):
        ours = nn.Sequential(*[nn.Dense(3, 3 + (i == 11), dtype=F64) for i in range(12)])
        ours.load_keras_weights(tmp_path / "deep.weights.h5", **options)
        assert rel_err(ours.eval()(x), np.asarray(deep(x))) < 1e-6
    with pytest.raises(ValueError, match=r"layer_names leaves out the weights file's layers \['dense_11'\]"):
        ours.load_keras_weights(tmp_path / "deep.weights.h5", layer_names=groups[:-1])


class PyTorchLayoutRecurrent(nn.Module):
    """Holds recurrent weights in PyTorch's layout, as the sequence layers will."""

    def __init__(self, torch_module):
        super().__init__()
        self.arrays = {k: v.detach().numpy().copy() for k, v in torch_module.state_dict().items()}

    def torch_tensors(self):
        return self.arrays


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_lstm_and_gru_weights_convert_to_pytorch_gate_order(keras, kind, bidirectional, rng):
    torch = pytest.importorskip("torch")
    layer = getattr(keras.layers, kind)(5, return_sequences=True, **({"reset_after": True} if kind == "GRU" else {}))
    km = keras.Sequential([keras.Input((6, 4)), keras.layers.Bidirectional(layer) if bidirectional else layer])
    for w in km.weights:  # non-zero biases everywhere
        w.assign(rng.normal(0, 0.5, w.shape))
    tm = getattr(torch.nn, kind)(4, 5, batch_first=True, bidirectional=bidirectional).double()
    holder = PyTorchLayoutRecurrent(tm)
    holder.load_keras_weights(km)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in holder.arrays.items()})
    x = rng.standard_normal((3, 6, 4))
    with torch.no_grad():
        got = tm(torch.from_numpy(x))[0].numpy()
    assert rel_err(got, np.asarray(km(x))) < 1e-6


def test_a_keras_gru_without_reset_after_is_refused(keras):
    torch = pytest.importorskip("torch")
    km = keras.Sequential([keras.Input((6, 4)), keras.layers.GRU(5, reset_after=False)])
    holder = PyTorchLayoutRecurrent(torch.nn.GRU(4, 5, batch_first=True))
    with pytest.raises(ValueError, match="the Keras GRU must use reset_after=True"):
        holder.load_keras_weights(km)


def test_a_keras_weight_that_does_not_fit_is_named(keras, rng):
    weights = keras_cnn(keras).get_weights()
    ours = ours_cnn()
    before = {k: v.copy() for k, v in ours.state_dict().items()}
    bad = list(weights)
    bad[8] = np.zeros((47, 7))
    with pytest.raises(
        ValueError,
        match=r"Keras weight #8 does not fit Dense\(48, 7, activation='tanh'\) at '7': expected kernel of shape \(48, 7\), given shape \(47, 7\)",  # noqa: E501
    ):
        ours.load_keras_weights(bad)
    assert all(np.array_equal(v, before[k]) for k, v in ours.state_dict().items())
    with pytest.raises(ValueError, match=r"the Keras weights end before Dense\(7, 4\) at '8': expected kernel"):
        ours.load_keras_weights(weights[:-2])
    with pytest.raises(ValueError, match=r"1 array\(s\) more than the model takes, the first #12 of shape \(2,\)"):
        ours.load_keras_weights(weights + [np.zeros(2)])
    km = keras_cnn(keras)
    wrong = nn.Sequential(nn.Conv2D(3, 6, 3, padding=1, dtype=F64), nn.Dense(6, 6, dtype=F64))
    with pytest.raises(ValueError, match=r"Keras layer '.*' \(BatchNormalization\) at weight #2 does not match Dense"):
        wrong.load_keras_weights(km)
    with pytest.raises(ValueError, match="follows a Flatten that no convolution precedes: pass input_channels="):
        nn.Sequential(nn.Flatten(), nn.Dense(12, 2)).load_keras_weights([np.zeros((12, 2)), np.zeros(2)])
    with pytest.raises(ValueError, match="data_format must be 'channels_last' or 'channels_first'"):
        ours.load_keras_weights(weights, data_format="NHWC")


def test_a_flatten_of_the_input_images_takes_their_channels(keras, rng):
    L = keras.layers
    km = keras.Sequential([keras.Input((4, 5, 2)), L.Flatten(), L.Dense(3)])
    x = rng.standard_normal((3, 2, 4, 5))
    ours = nn.Sequential(nn.Flatten(), nn.Dense(40, 3, dtype=F64))
    ours.load_keras_weights(km, input_channels=2)
    assert rel_err(ours.eval()(x), np.asarray(km(x.transpose(0, 2, 3, 1)))) < 1e-6
