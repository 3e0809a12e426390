"""The Textual workbench: screens over the store; work runs in job processes (never torch here)."""
