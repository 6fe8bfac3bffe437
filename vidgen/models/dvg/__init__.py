"""DVG (Shrivastava & Shrivastava, ICLR 2021): video prediction with SVG's encoder, decoder and LSTM, and a
Gaussian-process trigger that starts a new future when the GP's predictive variance jumps."""
