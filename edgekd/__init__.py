"""edgekd: hardware-budgeted knowledge distillation for handwriting recognition on Raspberry Pi-class boards."""

__version__ = "0.1.0"
