"""jaxmodels.projects.gnn_optimization."""
