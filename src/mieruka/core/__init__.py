"""The I/O-free core: tasks, parameters, jobs and their states, events, schedules."""
