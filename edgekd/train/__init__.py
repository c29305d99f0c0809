"""Training: device/AMP/DDP setup, batch sources (online augmentation, cached transfer set), checkpoints, fit()."""
