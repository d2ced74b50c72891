"""Presenting results: figures drawn from declared inputs and the self-contained HTML report."""
