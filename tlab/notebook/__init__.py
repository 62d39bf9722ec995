"""What the notebooks call: plots, diagrams, widget panels."""
