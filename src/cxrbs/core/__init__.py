"""Shared foundations: user errors, atomic writes, device choice, config checks, the results/ layout."""
