"""Training data: video sources, class labels, clips, and a deterministic, resumable loader.

    sources.py   the kinds of video (files, frame folders, zips of them, shards, synthetic) and finding them
    labels.py    class labels (data.labels): dataset.json, class sub-folders, synthetic shape kinds
    dataset.py   VideoDataset: a clip as a pure function of (video index, clip seed); build_dataset
    tokens.py    TokenDataset: clips encoded once to code grids (`vidgen data prepare --format tokens`)
    loader.py    the sample order (seed, sample number) -> key, its sampler, and the training DataLoader
    info.py      the summary `vidgen data info` prints

Import from the modules. Only dataset.py, tokens.py and loader.py import torch.
"""
