"""Experiments: random-search sweeps and scaling ladders over config.py's constants, each trial an ordinary
training run in a subprocess. Search spaces and draws (``search``), spec files (``spec``), the runner
(``sweep``), what a trial scored (``metrics``), ranked tables and plots (``results``), and ladders with their
verdict (``ladder``). The specs live in decisions/sweeps/ and decisions/ladders/; ``make adr FROM=runs/<sweep>``
turns a result into an ADR (ddpm/decisions/scaffold.py reads results.json).

May import: ``ddpm.model``, ``ddpm.data``, ``ddpm.run``, ``ddpm.decisions``, ``ddpm.measure``, ``ddpm.files``
and itself.
"""
