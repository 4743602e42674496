"""Mirror a BLS time-series directory into S3, fetch DataUSA population, report on both."""

__version__ = "1.0.0"
