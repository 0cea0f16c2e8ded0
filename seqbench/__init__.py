"""seqbench: train and compare sequence architectures; every result is a Parquet row."""

__version__ = "0.1.0"
