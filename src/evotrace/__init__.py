"""evotrace: traced parallel regularized-evolution NAS with transfer learning."""

__version__ = "0.1.0"
