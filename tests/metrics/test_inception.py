import numpy as np
import torch

from vidgen.metrics.features import extract_features
from vidgen.metrics.resize import tf1_resize
from vidgen.metrics.stats import FeatureBank


def test_features_per_frame_with_the_tf_input_convention(inception):
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 2, 40, 30, 3), dtype=np.uint8))
    bank = FeatureBank(2048, 2)
    chunk = inception.module.chunk
    inception.module.chunk = 1  # one frame per network call: the result must not depend on the chunking
    try:
        extract_features([frames], inception, torch.device("cpu"), [bank])
    finally:
        inception.module.chunk = chunk
    with torch.inference_mode():
        # The convention written out: TF1 bilinear to 299 on floats, then (x − 128) / 128.
        pixels = tf1_resize(frames[0].permute(0, 3, 1, 2).float(), (299, 299))  # (2, 3, 299, 299)
        expected = inception.module.net((pixels - 128) / 128).flatten(1).numpy()
    assert inception.per_frame and bank.features.shape == (2, 2048)
    np.testing.assert_allclose(bank.features, expected, rtol=1e-4, atol=1e-4)
    assert np.isfinite(expected).all() and (expected >= 0).all()  # pool features follow a ReLU
