"""Driver scripts run by other interpreters (the original threadmem's venv, the peers'
venv). They import nothing from the rest of :mod:`bench` but :mod:`bench.measure`."""
