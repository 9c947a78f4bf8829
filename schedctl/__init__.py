"""schedctl: the operator's command line for sched."""
