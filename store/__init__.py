"""The store: SQLModel tables, opening and migrating the database, artifact folders, queries.

Imports neither the engine (workbench) nor the TUI, nor torch or transformers.
"""
