"""Figures of the papers drawn from stored run and analysis files (`rltx plot`); never recomputes."""
