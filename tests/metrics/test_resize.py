import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidgen.metrics.resize import tf1_resize, tf1_resize_matrix


def _tf1_reference(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """tf.image.resize_bilinear (TF1, align_corners=False) pixel by pixel in float64, as TF's kernel
    computes it: source = i · in/out, lerp between floor and min(floor + 1, in − 1) along x, then y."""
    in_h, in_w = image.shape[-2:]
    out = np.empty(image.shape[:-2] + (out_h, out_w))
    for i in range(out_h):
        y = i * in_h / out_h
        y0, y1 = int(np.floor(y)), min(int(np.floor(y)) + 1, in_h - 1)
        for j in range(out_w):
            x = j * in_w / out_w
            x0, x1 = int(np.floor(x)), min(int(np.floor(x)) + 1, in_w - 1)
            top = image[..., y0, x0] + (image[..., y0, x1] - image[..., y0, x0]) * (x - x0)
            bottom = image[..., y1, x0] + (image[..., y1, x1] - image[..., y1, x0]) * (x - x0)
            out[..., i, j] = top + (bottom - top) * (y - y0)
    return out


@pytest.mark.parametrize("size_in, size_out", [((16, 12), (37, 29)), ((40, 50), (13, 17)), ((8, 8), (8, 20))])
def test_matches_the_tf1_formula_in_float64(size_in, size_out):
    image = np.random.default_rng(0).uniform(0, 255, size=(2, 3, *size_in))
    ours = tf1_resize(torch.from_numpy(image), size_out).numpy()
    np.testing.assert_allclose(ours, _tf1_reference(image, *size_out), rtol=0, atol=1e-9)


def test_float32_stays_close_to_float64():
    image = np.random.default_rng(1).uniform(0, 255, size=(3, 64, 48))
    ours = tf1_resize(torch.from_numpy(image).float(), (224, 224)).double().numpy()
    np.testing.assert_allclose(ours, _tf1_reference(image, 224, 224), rtol=0, atol=1e-3)


def test_equals_grid_sample_with_the_shifted_grid():
    # The formulation of NVIDIA's detector: grid_sample over an affine grid shifted by 1/in − 1/out.
    x = torch.rand(2, 3, 30, 20, dtype=torch.float64)
    out_h, out_w = 299, 299
    theta = torch.eye(2, 3, dtype=torch.float64).repeat(2, 1, 1)
    theta[:, 0, 2] += 1 / 20 - 1 / out_w
    theta[:, 1, 2] += 1 / 30 - 1 / out_h
    grid = F.affine_grid(theta, [2, 3, out_h, out_w], align_corners=False)
    expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(tf1_resize(x, (out_h, out_w)), expected, rtol=0, atol=1e-9)


def test_differs_from_torch_half_pixel_bilinear():
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    torch_style = F.interpolate(x, (224, 224), mode="bilinear", align_corners=False)
    assert (tf1_resize(x, (224, 224)) - torch_style).abs().max() > 0.05


def test_weights_sum_to_one_and_same_size_is_identity():
    weights = tf1_resize_matrix(17, 224)
    torch.testing.assert_close(weights.sum(1), torch.ones(224, dtype=torch.float64))
    x = torch.rand(3, 5, 7)
    assert tf1_resize(x, (5, 7)) is x
