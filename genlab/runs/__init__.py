"""Run directories and the files in them that must survive crashes: atomic checkpoints, env records."""
