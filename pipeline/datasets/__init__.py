"""Datasets tandem ships: the synthetic listening sessions and the Chicago taxi CSV."""
