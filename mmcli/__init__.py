"""mmcli: linear mixed models, penalized regression splines and additive mixed models from CSV files."""

__version__ = "0.1.0"
