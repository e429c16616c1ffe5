"""Synthetic benchmarks generated exactly as their papers describe (deterministic per seed)."""
