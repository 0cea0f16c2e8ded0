"""An example third-party seqbench plugin (see plugin.py and lstm.py)."""
