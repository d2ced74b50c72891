"""cxrbs: chest X-ray bone suppression and TB classification (Rajaraman et al. 2021, and beyond)."""

__version__ = "0.1.0"
