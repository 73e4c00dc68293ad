"""Replication kit for 'Causal Analysis for Robust Interpretability of Neural Networks' (WACV 2024)."""
__version__ = "0.1.0"
