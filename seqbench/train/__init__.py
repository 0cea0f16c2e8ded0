"""Train: one run, start to row. The runner drives Lightning's Trainer over the task's data (data) and
the LightningModule (lit), with checkpoints, trackers, progress, the thread policy, evaluations at other
lengths, probes and the kernel policy. Builds on configure; knows nothing of sweeps or analysis.
"""
