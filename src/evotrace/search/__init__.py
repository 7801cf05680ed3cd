"""Algorithm 1 (regevo), its MPI driver over DeepHyper (driver), the worker run function (worker)
and candidate training (train)."""
