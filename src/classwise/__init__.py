"""classwise: class-wise diagnosis of adversarial robustness.

Pipeline: data -> model -> attack -> per-sample results -> analysis -> report.
"""

__version__ = "0.1.0"
