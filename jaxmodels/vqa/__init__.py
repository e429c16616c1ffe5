"""VQA with the differentiable counting component (system S11)."""
