"""Sweeps: many runs. A grid expanded into cells (sweep), each claimed by one worker (claims_lock),
launched here, on Ray or on SLURM (launchers), from the command line or an experiment file (experiments),
with a progress display (sweep_progress). Builds on train and configure.
"""
