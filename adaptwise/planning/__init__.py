"""Planning and the climbs: the plan for this machine (plan, probe, planner) and what runs it
step by step (ladder, sweep, learning_curve, and what they read back from a run folder: stored)."""
