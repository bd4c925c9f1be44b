"""Running a model: the run plan, input signals, and the core's simulators (torch rate network, target SDE)."""
