"""Training, evaluation, ensembles and experiment grids (`screen train`, `evaluate`, `ensemble`, `experiment`)."""
