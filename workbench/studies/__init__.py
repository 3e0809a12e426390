"""Studies: sweeps over scorers, targets and calibration sources of one base model, grouped under
a name, and what they show.

- `request`: what a sweep asks for, its configurations and the settings its figures are read at
  (light: the TUI reads studies through it).
- `sweep`: checking a sweep, finding what is already done, queueing the rest (the engine's side).
- `view`: a study's configurations with their status and figures; the trade-off, chart and
  specialisation tables (light).
- `findings`: the statements the figures support, by explicit rules (light).
- `report`: the Markdown report (light).
"""
