"""The workbench's screens: lists of the store's models, runs and jobs, and what opens from them."""
