"""Data augmentation: the shift kernels against a pixel-by-pixel definition, RandomShift, and
its use through BatchIterator, Trainer.fit and train.py --shift."""

import numpy as np
import pytest

from tinygrad_free import nn, optim
from tinygrad_free.augment import Compose, RandomFlip, RandomShift
from tinygrad_free.data import BatchIterator
from tinygrad_free.kernels import shift
from tinygrad_free.train import Trainer


def shifted_by_definition(x, shifts):
    """out[b, r, c] = x[b, r - dy, c - dx], 0 outside: the docstring, one pixel at a time."""
    out = np.zeros_like(x)
    B, H, W = x.shape
    for b in range(B):
        dy, dx = shifts[b]
        for r in range(H):
            for c in range(W):
                if 0 <= r - dy < H and 0 <= c - dx < W:
                    out[b, r, c] = x[b, r - dy, c - dx]
    return out


@pytest.mark.parametrize("impl", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 28, 28), (7, 5, 9), (33, 3, 2)])
def test_shift_kernels_equal_the_pixel_definition_exactly(rng, impl, dtype, shape):
    x = rng.random(shape).astype(dtype) + 1  # no zeros: a misplaced fill would show
    B, H, W = shape
    shifts = rng.integers(-max(H, W) - 2, max(H, W) + 3, size=(B, 2))  # includes whole-image shifts
    shifts[0] = (0, 0)
    out = np.full_like(x, np.nan)
    got = getattr(shift, f"shift_images_{impl}")(x, shifts, out)
    assert got is out
    np.testing.assert_array_equal(out, shifted_by_definition(x, shifts))


def test_shift_numba_rejects_mismatched_shapes(rng):
    x = rng.random((3, 4, 4))
    with pytest.raises(ValueError, match="shifts must be"):
        shift.shift_images_numba(x, np.zeros((2, 2), np.int64), np.empty_like(x))


def test_random_shift_moves_each_image_by_at_most_max_shift(rng, each_backend):
    x = rng.random((40, 36)).astype(np.float32) + 1
    out = RandomShift(2, (6, 6))(x, np.random.default_rng(0))
    images = x.reshape(-1, 6, 6)
    seen = set()
    for b, o in enumerate(out.reshape(-1, 6, 6)):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(o, shifted_by_definition(images[b : b + 1], np.array([[dy, dx]]))[0])
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 10  # the 25 shifts are all being drawn


def test_random_shift_is_reproducible_and_zero_is_the_identity(rng):
    x = rng.random((8, 784)).astype(np.float32)
    a = RandomShift(1)(x, np.random.default_rng(5)).copy()
    b = RandomShift(1)(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, x)
    assert RandomShift(0)(x, np.random.default_rng(5)) is x


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_shift": -1}, "max_shift"),
        ({"max_shift": 1.5}, "max_shift"),
        ({"max_shift": True}, "max_shift"),
        ({"image_shape": (28,)}, "image_shape"),
        ({"image_shape": (0, 28)}, "image_shape"),
    ],
)
def test_random_shift_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomShift(**kwargs)


def test_random_shift_rejects_batches_of_the_wrong_image_size(rng):
    with pytest.raises(ValueError, match="28x28"):
        RandomShift(1)(rng.random((4, 100)).astype(np.float32), rng)


def test_batch_iterator_transform_changes_images_not_labels_or_order(rng):
    x = rng.random((50, 16)).astype(np.float32)
    y = np.arange(50)
    plain = list(BatchIterator(x, y, 8, seed=3))
    for reuse in (False, True):
        it = BatchIterator(x, y, 8, seed=3, reuse_buffers=reuse, transform=RandomShift(1, (4, 4)))
        for (xp, yp), (xa, ya) in zip(plain, ((xb.copy(), yb.copy()) for xb, yb in it)):
            np.testing.assert_array_equal(ya, yp)
            assert xa.shape == xp.shape and not np.array_equal(xa, xp)


def test_batch_iterator_without_reuse_buffers_yields_transformed_batches_safe_to_keep(rng):
    x, y = rng.random((30, 16)).astype(np.float32), np.arange(30)
    kept = list(BatchIterator(x, y, 10, seed=1, transform=RandomShift(1, (4, 4))))
    reused = [
        xb.copy() for xb, _ in BatchIterator(x, y, 10, seed=1, reuse_buffers=True, transform=RandomShift(1, (4, 4)))
    ]
    for (xb, _), expected in zip(kept, reused):
        np.testing.assert_array_equal(xb, expected)


def test_batch_iterator_transform_gets_a_generator_seeded_by_seed_and_epoch(rng):
    draws = []
    record = lambda xb, g: draws.append(g.integers(1 << 30)) or xb  # noqa: E731
    x, y = rng.random((6, 4)), np.arange(6)
    for _ in range(2):
        it = BatchIterator(x, y, 3, seed=7, transform=record)
        list(it), list(it)
    assert draws[:4] == draws[4:] and len(set(draws[:4])) == 4


def test_batch_iterator_rejects_a_transform_that_is_not_callable(rng):
    with pytest.raises(TypeError, match="transform"):
        BatchIterator(rng.random((4, 2)), np.arange(4), 2, transform="shift")


def _train(augment, x, y, seed=0):
    from tinygrad_free.recipes import build_mlp

    model = build_mlp(16, 1, 8, "relu", rng=seed)
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.create("adam", model.parameters()), progress=False)
    history = trainer.fit(x, y, epochs=2, batch_size=10, validation_data=(x, y), seed=seed, augment=augment)
    return history, model.state_dict()


def test_fit_with_augment_is_reproducible_and_trains_on_shifted_images(rng):
    x = rng.random((60, 16)).astype(np.float32)
    y = rng.integers(0, 10, 60)
    h1, w1 = _train(RandomShift(1, (4, 4)), x, y)
    h2, w2 = _train(RandomShift(1, (4, 4)), x, y)
    _, w0 = _train(None, x, y)
    metrics = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
    assert [h1.history[k] for k in metrics] == [h2.history[k] for k in metrics]
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)
    assert not all(np.array_equal(w1[k], w0[k]) for k in w1)


@pytest.mark.parametrize("shape", [(6, 12), (6, 1, 3, 4)])
def test_random_flip_mirrors_the_drawn_images_left_right_and_keeps_the_others(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    flip = RandomFlip(0.5, (3, 4))
    out = flip(x, np.random.default_rng(7)).reshape(6, 3, 4)
    drawn = np.random.default_rng(7).random(6) < 0.5
    assert drawn.any() and not drawn.all()  # the seed draws both kinds
    images = x.reshape(6, 3, 4)
    np.testing.assert_array_equal(out[drawn], images[drawn][:, :, ::-1])
    np.testing.assert_array_equal(out[~drawn], images[~drawn])


def test_random_flip_at_p_0_and_1_is_the_identity_and_the_mirror(rng):
    x = rng.standard_normal((4, 9)).astype(np.float32)
    np.testing.assert_array_equal(RandomFlip(0.0, (3, 3))(x, rng), x)
    np.testing.assert_array_equal(RandomFlip(1.0, (3, 3))(x, rng).reshape(4, 3, 3), x.reshape(4, 3, 3)[:, :, ::-1])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"p": 1.5}, r"p must be a probability in \[0, 1\], got 1.5"), ({"image_shape": (0, 3)}, "image_shape")],
)
def test_random_flip_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomFlip(**kwargs)


def test_compose_applies_the_transforms_in_order_with_one_generator(rng):
    x = rng.standard_normal((5, 16)).astype(np.float32)
    both = Compose([RandomFlip(0.5, (4, 4)), RandomShift(1, (4, 4))])(x, np.random.default_rng(3))
    g = np.random.default_rng(3)
    by_hand = RandomShift(1, (4, 4))(RandomFlip(0.5, (4, 4))(x, g).copy(), g)
    np.testing.assert_array_equal(both, by_hand)
    with pytest.raises(TypeError, match="every transform must be callable"):
        Compose([RandomFlip(), 3])
