"""`python -m edgekd ...` (and `torchrun --nproc_per_node N -m edgekd distill ...` for DDP)."""

from edgekd.cli import main

main()
